"""Per-account throttling and every fault option, each doing what it says."""

from __future__ import annotations

import asyncio
import time

import pytest

from smppgw.sim.server import Faults, SimAccount, SimConfig, Simulator
from smppgw.smpp.codec import encode
from smppgw.smpp.constants import Status

from sim.client import RawClient, submit_sm


async def burst(client: RawClient, count: int, **fields: object) -> list[int]:
    pdus = [submit_sm(sequence=client.next_seq(), **fields) for _ in range(count)]
    client.send(b"".join(encode(p) for p in pdus))
    return [(await client.response(p)).status for p in pdus]


async def test_throttle_window_is_shared_by_the_account_binds() -> None:
    config = SimConfig(accounts=[SimAccount("a", "a", tps=6), SimAccount("b", "b", tps=6)])
    async with Simulator(config) as sim:
        one, two, other = [await RawClient.connect(sim.port) for _ in range(3)]
        for client, name in ((one, "a"), (two, "a"), (other, "b")):
            assert (await client.bind(name, name)).status == 0
        first = await burst(one, 4)
        second = await burst(two, 4)
        assert first == [0] * 4
        assert second == [0, 0] + [Status.ESME_RTHROTTLED] * 2
        assert await burst(other, 6) == [0] * 6  # another account has its own window
        assert sim.counters.submits_throttled == 2
        for c in (one, two, other):
            await c.close()


async def test_throttle_window_slides() -> None:
    async with Simulator(SimConfig(accounts=[SimAccount("a", "a", tps=3)])) as sim:
        client = await RawClient.connect(sim.port)
        await client.bind("a", "a")
        assert await burst(client, 4) == [0, 0, 0, Status.ESME_RTHROTTLED]
        await asyncio.sleep(1.05)
        assert await burst(client, 4) == [0, 0, 0, Status.ESME_RTHROTTLED]
        assert sim.counters.submits_accepted == 6
        await client.close()


async def test_reject_fraction_with_a_status() -> None:
    faults = Faults(reject_fraction=1.0, reject_status=Status.ESME_RMSGQFUL)
    async with Simulator(SimConfig(faults=faults)) as sim:
        client = await RawClient.connect(sim.port)
        await client.bind()
        assert await burst(client, 5) == [Status.ESME_RMSGQFUL] * 5
        assert sim.submits == [] and sim.counters.submits_rejected == 5
        sim.set_faults(reject_fraction=0.5, reject_status="ESME_RSYSERR")
        statuses = await burst(client, 400)
        rejected = statuses.count(Status.ESME_RSYSERR)
        assert set(statuses) == {0, Status.ESME_RSYSERR}
        assert 120 < rejected < 280  # 0.5 of 400; far outside this is a bug, not bad luck
        assert len(sim.submits) == 400 - rejected
        await client.close()


async def test_response_delay() -> None:
    async with Simulator(SimConfig(faults=Faults(response_delay=0.3))) as sim:
        client = await RawClient.connect(sim.port)
        await client.bind()
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await burst(client, 3) == [0, 0, 0]
        assert 0.28 <= loop.time() - start < 1.0
        sim.set_faults(response_delay=0.0)
        start = loop.time()
        await burst(client, 1)
        assert loop.time() - start < 0.2
        await client.close()


async def test_no_response_fraction() -> None:
    faults = Faults(no_response_fraction=1.0)
    async with Simulator(SimConfig(faults=faults, receipt_delay=0.0)) as sim:
        client = await RawClient.connect(sim.port)
        await client.bind()
        pdu = client.send(submit_sm(registered_delivery=1))
        assert pdu is not None
        with pytest.raises(TimeoutError):
            await client.response(pdu, timeout=0.3)
        # The SMSC did receive it (a gateway's resend test needs to see that), unanswered.
        assert len(sim.submits) == 1 and not sim.submits[0].answered
        assert sim.counters.submits_unanswered == 1 and sim.counters.submits_accepted == 0
        assert sim.counters.receipts_sent == 0
        sim.set_faults(no_response_fraction=0.0)
        assert (await client.submit()).status == 0
        await client.close()


async def test_drop_after_submits() -> None:
    async with Simulator(SimConfig(faults=Faults(drop_after_submits=3))) as sim:
        client = await RawClient.connect(sim.port)
        await client.bind()
        pdus = [submit_sm(sequence=client.next_seq()) for _ in range(5)]
        client.send(b"".join(encode(p) for p in pdus))
        assert await client.closed()
        answered = [p for p in client.inbox if p.is_response]
        assert [p.sequence for p in answered] == [p.sequence for p in pdus[:3]]
        assert all(p.status == 0 for p in answered)
        assert len(sim.submits) == 3 and sim.counters.drops == 1
        # Each new connection gets N submits again.
        again = await RawClient.connect(sim.port)
        await again.bind()
        assert await burst(again, 3) == [0, 0, 0]
        assert await again.closed()
        await client.close()
        await again.close()


async def test_refuse_binds_for_a_while() -> None:
    async with Simulator(SimConfig(faults=Faults(refuse_binds_for=0.3))) as sim:
        client = await RawClient.connect(sim.port)
        assert (await client.bind()).status == Status.ESME_RBINDFAIL
        await asyncio.sleep(0.35)
        assert (await client.bind()).status == 0
        sim.set_faults(refuse_binds_for=10)  # set at run time: counts from now
        late = await RawClient.connect(sim.port)
        assert (await late.bind()).status == Status.ESME_RBINDFAIL
        assert sim.counters.binds_refused == 2
        sim.set_faults(refuse_binds_for=0)
        assert (await late.bind()).status == 0
        await client.close()
        await late.close()


async def test_set_faults_rejects_nonsense() -> None:
    async with Simulator(SimConfig()) as sim:
        for bad in (
            {"reject_fraction": 2.0},
            {"response_delay": -1},
            {"arrival_jitter": -0.001},
            {"drop_after_submits": 0},
            {"reject_status": "ESME_NOPE"},
            {"rejct_fraction": 0.5},
        ):
            try:
                sim.set_faults(**bad)
            except ValueError:
                continue
            raise AssertionError(f"accepted {bad}")
        assert sim.faults == Faults()


async def test_arrival_jitter_delays_what_the_rate_limiter_sees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first submit reaches the limiter 0.3 s late, the next on time: 1.1 s apart on the
    wire but 0.8 s apart at the limiter, so at tps 1 the second is throttled (without the
    jitter it would pass), and the recorded arrival is the time the limiter saw."""
    delays = iter([0.3, 0.0])
    monkeypatch.setattr("smppgw.sim.accounts.random.uniform", lambda a, b: next(delays))
    faults = Faults(arrival_jitter=0.3)
    async with Simulator(SimConfig(accounts=[SimAccount("a", "a", tps=1)], faults=faults)) as sim:
        client = await RawClient.connect(sim.port)
        await client.bind("a", "a")
        sent = time.monotonic()
        assert await burst(client, 1) == [0]
        assert sim.submits[0].at - sent >= 0.3
        await asyncio.sleep(1.1)
        assert await burst(client, 1) == [Status.ESME_RTHROTTLED]
        sim.set_faults(arrival_jitter=0.0)
        await asyncio.sleep(0.25)  # the first, as the limiter saw it, is now over 1 s old
        assert await burst(client, 1) == [0]
        await client.close()
