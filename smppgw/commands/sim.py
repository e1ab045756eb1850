"""``smppgw sim``: the SMSC simulator (the implementation lives in :mod:`smppgw.sim.cli`)."""

from __future__ import annotations

from smppgw.sim.cli import configure, run

__all__ = ["configure", "run"]
