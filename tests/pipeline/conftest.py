"""Fixtures shared by the pipeline tests that run a whole gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from smppgw.sim.server import Simulator

from gateway.harness import sim_config


@pytest.fixture
async def viettel() -> AsyncIterator[Simulator]:
    """One simulated SMSC with quick receipts."""
    async with Simulator(sim_config(receipt_delay=0.05, name="viettel")) as sim:
        yield sim
