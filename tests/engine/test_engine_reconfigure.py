"""Live changes to a running carrier (what a reload applies without a new bind): tps and
window take effect at once with every bind kept, and ``sessions`` grows or shrinks one bind
at a time, no job lost. Measured at a real simulator over TCP."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smppgw.config import CarrierConfig, Secret
from smppgw.engine.carrier import Carrier
from smppgw.engine.message import Priority
from smppgw.engine.reconfig import diff
from smppgw.engine.throttle import Throttle
from smppgw.sim.server import Faults

from .conftest import CarrierFactory, Recorder, SimFactory, message, until
from support.rates import SendTimes, in_span, most_in_second_ending_at


@settings(max_examples=60, deadline=None)
@given(
    before=st.sampled_from([5, 30, 50, 100, 400]),
    after=st.sampled_from([5, 30, 50, 100, 400]),
    at=st.floats(2.0, 3.0),
)
def test_a_rate_change_never_bursts_and_shows_at_once(
    before: float, after: float, at: float
) -> None:
    """Under a backlog the rate changes from ``before`` to ``after`` at ``at`` seconds: no
    second ending after the change holds more than ``after`` (nor before it more than
    ``before``). A raised rate shows in the first second after the change; a lowered one
    first waits out the second that the old rate filled, then carries ~``after``."""
    now = 0.0
    throttle = Throttle(before, clock=lambda: now)
    sends: list[float] = []
    changed = False
    while now < at + 3.0:
        if not changed and now >= at:
            throttle.set_rate(after)
            changed = True
        while throttle.delay(now) == 0.0:
            sends.append(throttle.take(now))
        now += throttle.delay(now) + 0.001
        if not changed:
            now = min(now, at)
    old = [t for t in sends if t < at]
    assert most_in_second_ending_at(old, 0.0) <= before
    assert most_in_second_ending_at(sends, at) <= after
    start = at if after >= before else at + 1.0
    assert in_span(sends, start, start + 1.0) >= 0.95 * after - 1


async def backlog(carrier: Carrier, total: int) -> None:
    for i in range(total):
        carrier.submit(message(i, priority=Priority.LOW))


async def test_tps_change_mid_backlog_keeps_binds_and_shows_within_a_second(
    make_sim: SimFactory, make_carrier: CarrierFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tps 50 → 100 → 30 under a backlog over two binds: the simulator sees the same two
    connections and no new bind throughout; after each change the new rate shows at the
    SMSC in the next second (a lowered one once the second the old rate filled has
    passed), and no sliding second of the carrier's sends goes over the limit in force.

    The limit is checked on the throttle's grant times (``SendTimes``): the simulator
    stamps a submit_sm when the shared event loop reaches it, so a send granted at 100/s
    just before the change can be stamped just after it (seen in CI: the second ending at
    that stamp held 96 of the old rate's sends, counted against the new 30)."""
    sim = await make_sim()
    carrier = await make_carrier(sim, tps=50, sessions=2, window=5)
    sent = SendTimes(monkeypatch, carrier)
    await backlog(carrier, 420)
    await until(lambda: len(sim.submits) >= 1, what="the first submit")
    binds = sim.counters.binds_total
    keepers = list(carrier.keepers)
    await asyncio.sleep(1.5)
    carrier.reconfigure(dataclasses.replace(carrier.config, tps=100))
    raised = time.monotonic()
    await asyncio.sleep(2.0)
    carrier.reconfigure(dataclasses.replace(carrier.config, tps=30))
    lowered = time.monotonic()
    await asyncio.sleep(2.5)
    times = [s.at for s in sim.submits]
    sends = list(sent.times)

    assert sim.counters.binds_total == binds == 2
    assert len(sim.connections) == 2 and sim.counters.unbinds == 0
    assert carrier.keepers == keepers and all(k.binds == 1 for k in keepers)
    assert most_in_second_ending_at([t for t in sends if t < raised], 0.0) <= 50
    assert most_in_second_ending_at([t for t in sends if t < lowered], raised) <= 100
    assert most_in_second_ending_at(sends, lowered) <= 30
    assert in_span(times, raised, raised + 1.0) >= 90, times
    # Lowered: the last second at 100 must pass first (no burst), then 30 a second.
    assert in_span(times, lowered + 1.0, lowered + 2.0) >= 27, times
    assert sim.counters.submits_throttled == 0


async def test_window_change_applies_without_a_rebind(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """The SMSC answers each submit after 0.1 s, so the window sets the rate: 2 → 8 lifts it
    from ~20/s to ~80/s on the same bind; 8 → 1 lets the submits in flight finish."""
    sim = await make_sim(faults=Faults(response_delay=0.1))
    carrier = await make_carrier(sim, tps=1000, window=2)
    total = 200
    await backlog(carrier, total)
    await asyncio.sleep(1.0)
    carrier.reconfigure(dataclasses.replace(carrier.config, window=8))
    widened = time.monotonic()
    await asyncio.sleep(1.0)
    carrier.reconfigure(dataclasses.replace(carrier.config, window=1))
    await until(lambda: len(recorder.outcomes()) == total, timeout=30.0, what="all outcomes")
    times = [s.at for s in sim.submits]

    assert in_span(times, widened - 1.0, widened) <= 25
    assert in_span(times, widened + 0.1, widened + 0.9) >= 40
    assert sim.counters.binds_total == 1 and sim.counters.unbinds == 0
    assert carrier.keepers[0].session is not None and carrier.keepers[0].session.window == 1
    assert all(recorder.outcome(f"j{i}").kind == "submitted" for i in range(total))


async def test_sessions_grow_and_shrink_one_bind_at_a_time(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """sessions 2 → 3 → 1 under a backlog: one bind added, then two unbound one after the
    other (the simulator never drops by two at once), the first bind kept throughout,
    and every job submitted exactly once."""
    sim = await make_sim(faults=Faults(response_delay=0.02))
    carrier = await make_carrier(sim, tps=150, sessions=2, window=4)
    total = 600
    await backlog(carrier, total)
    first = carrier.keepers[0]
    seen: list[int] = []
    sampling = True

    async def sample() -> None:
        while sampling:
            if not seen or seen[-1] != len(sim.connections):
                seen.append(len(sim.connections))
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    await asyncio.sleep(0.5)
    await carrier.resize(3, drain_timeout=5.0)
    await until(lambda: len(sim.connections) == 3, what="the third bind")
    await asyncio.sleep(0.5)
    await carrier.resize(1, drain_timeout=5.0)
    await until(lambda: len(recorder.outcomes()) == total, timeout=30.0, what="all outcomes")
    sampling = False
    await sampler

    assert seen == [2, 3, 2, 1], seen
    assert sim.counters.binds_total == 3 and sim.counters.unbinds == 2
    assert carrier.keepers == [first] and first.binds == 1
    assert all(recorder.outcome(f"j{i}").kind == "submitted" for i in range(total))
    assert len(sim.submits) == total


def test_diff_sorts_fields_by_how_they_apply() -> None:
    """Only what identifies a bind asks for a rebind; sessions are counted apart."""
    old = CarrierConfig(name="v", host="h", port=1, system_id="s", password=Secret("a"))
    new = dataclasses.replace(old, tps=99.0, window=3, sessions=3, prefixes=("849",))
    change = diff(old, new)
    assert change.rebind == () and change.sessions == 2
    assert set(change.live) == {"tps", "window", "prefixes"}
    assert diff(old, dataclasses.replace(old, password=Secret("b"))).rebind == ("password",)
    assert "password" not in repr(diff(old, dataclasses.replace(old, password=Secret("b"))).live)


async def test_enquire_link_interval_applies_on_the_bound_session(
    make_sim: SimFactory, make_carrier: CarrierFactory
) -> None:
    """30 s → 0.1 s: the keepalive asleep for the old interval restarts, so enquire_link
    goes within a fraction of a second, on the same bind."""
    sim = await make_sim()
    carrier = await make_carrier(sim, enquire_link_interval=30.0)
    session = carrier.keepers[0].session
    assert session is not None and session.enquire_links_sent == 0
    carrier.reconfigure(dataclasses.replace(carrier.config, enquire_link_interval=0.1))
    await until(lambda: session.enquire_links_sent >= 2, timeout=2.0, what="enquire_link")
    assert carrier.keepers[0].session is session
    assert sim.counters.binds_total == 1
