"""A session needs only its :class:`BindParams`: no gateway config, against a real simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from smppgw.sim.server import SimAccount, SimConfig, Simulator
from smppgw.smpp.constants import Status
from smppgw.smpp.pdu import DataSm, DeliverSm, SubmitSm, SubmitSmResp
from smppgw.smpp.session import BindParams, Session, SessionKeeper


class _NoMo:
    async def deliver(self, session: Session, pdu: DeliverSm | DataSm) -> int:
        return Status.ESME_ROK


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimConfig(accounts=[SimAccount("lib", "s3cret")]))
    await simulator.start()
    yield simulator
    await simulator.stop(unbind_timeout=0.2)


async def _bound(keeper: SessionKeeper) -> Session:
    async with asyncio.timeout(5):
        while not keeper.bound:
            await asyncio.sleep(0.01)
    assert keeper.session is not None
    return keeper.session


async def test_a_keeper_binds_and_submits_with_plain_params(sim: Simulator) -> None:
    params = BindParams(
        name="lib", host="127.0.0.1", port=sim.port, system_id="lib", password="s3cret",
        mode="transmitter", window=3, response_timeout=2.0,
    )  # fmt: skip
    keeper = SessionKeeper(params, _NoMo(), name="lib/tx")
    keeper.start()
    try:
        session = await _bound(keeper)
        assert (session.mode, session.window) == ("transmitter", 3)
        result = await session.request(SubmitSm(destination_addr="491701", short_message=b"hi"))
        assert isinstance(result, SubmitSmResp) and result.status == Status.ESME_ROK
        assert [s.pdu.short_message for s in sim.submits] == [b"hi"]
    finally:
        await keeper.stop(1.0)


async def test_a_wrong_password_in_the_params_is_refused(sim: Simulator) -> None:
    params = BindParams(
        name="lib", host="127.0.0.1", port=sim.port, system_id="lib", password="wrong",
        reconnect_min=0.05, reconnect_max=0.1,
    )  # fmt: skip
    keeper = SessionKeeper(params, _NoMo(), name="lib/trx")
    keeper.start()
    try:
        async with asyncio.timeout(5):
            while not keeper.bind_refusals:
                await asyncio.sleep(0.01)
        assert "ESME_RINVPASWD" in keeper.last_error
        assert not keeper.bound
    finally:
        await keeper.stop(1.0)


def test_params_never_show_the_password() -> None:
    params = BindParams(name="c", host="h", port=1, system_id="u", password="hunter2")
    assert "hunter2" not in repr(params)
    assert "hunter2" not in str(params)


def test_an_unknown_bind_mode_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'both'"):
        BindParams(name="c", host="h", port=1, system_id="u", mode="both")
