"""Carrier behaviour against the simulator: lanes, ttl, errors, long messages, shutdown."""

from __future__ import annotations

import asyncio
import time

import pytest

from smppgw.config import SourceConfig
from smppgw.engine.message import Priority
from smppgw.sim.server import Faults
from smppgw.smpp.constants import Status

from .conftest import CarrierFactory, Recorder, SimFactory, job_of, message, until

LONG = "Don hang 1984 cua ban da duoc giao. " * 12  # GSM, 3 parts of 153


async def test_high_priority_goes_next(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """With a low backlog being sent, new high jobs go next (after what is already in a
    window), then normal ones, then the rest of the low lane."""
    sim = await make_sim()
    carrier = await make_carrier(sim, tps=10, window=1)
    for i in range(20):
        carrier.submit(message(i, priority=Priority.LOW))
    await until(lambda: len(sim.submits) >= 3)
    sent = carrier.counters.submit_sm_sent  # already written (one may be in the window)
    for i in (100, 101):
        carrier.submit(message(i, priority=Priority.NORMAL))
    for i in (200, 201, 202):
        carrier.submit(message(i, priority=Priority.HIGH))
    assert carrier.backlog() == {Priority.HIGH: 3, Priority.NORMAL: 2, Priority.LOW: 20 - sent}
    await until(lambda: len(sim.submits) >= sent + 5, timeout=3.0)
    order = [job_of(s) for s in sim.submits]
    assert order[:sent] == [f"j{i}" for i in range(sent)]
    assert order[sent : sent + 5] == ["j200", "j201", "j202", "j100", "j101"]


async def test_expired_before_submission_is_never_sent(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim()
    carrier = await make_carrier(sim)
    carrier.submit(message(1, expires_at=time.time() - 1))
    await until(lambda: len(recorder.outcomes()) == 1)
    assert recorder.outcome("j1").args[1:3] == ("expired", "ttl")
    await asyncio.sleep(0.05)
    assert sim.submits == []


async def test_ttl_runs_out_in_the_queue(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """At 1 TPS the second and third jobs of a 1.5 s ttl expire while queued; the first goes
    with a relative validity_period."""
    sim = await make_sim()
    carrier = await make_carrier(sim, tps=1)
    deadline = time.time() + 1.5
    for i in range(3):
        carrier.submit(message(i, expires_at=deadline))
    await until(lambda: len(recorder.outcomes()) == 3, timeout=3.0)
    assert recorder.outcome("j0").kind == "submitted"
    assert recorder.outcome("j1").args[1:3] == ("expired", "ttl")
    assert recorder.outcome("j2").args[1:3] == ("expired", "ttl")
    assert [job_of(s) for s in sim.submits] == ["j0"]
    assert sim.submits[0].pdu.validity_period == "000000000001000R"


async def test_validity_period_and_addresses(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim()
    carrier = await make_carrier(sim, source=SourceConfig("SHOPVN"))
    carrier.submit(message(1, expires_at=time.time() + 3600))
    carrier.submit(message(2, dlr=False, source=SourceConfig("84901112222", ton=1, npi=1)))
    await until(lambda: len(sim.submits) == 2)
    first, second = (s.pdu for s in sim.submits)
    assert first.validity_period in ("000000010000000R", "000000005959000R")
    assert (first.source_addr, first.source_addr_ton, first.source_addr_npi) == ("SHOPVN", 5, 0)
    assert (first.destination_addr, first.dest_addr_ton, first.dest_addr_npi) == (
        "84910000001",
        1,
        1,
    )
    assert first.registered_delivery == 1
    assert second.validity_period == ""
    assert (second.source_addr, second.source_addr_ton, second.source_addr_npi) == (
        "84901112222",
        1,
        1,
    )
    assert second.registered_delivery == 0


async def test_text_that_cannot_be_sent_is_rejected(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim()
    carrier = await make_carrier(sim, max_parts=2)
    carrier.submit(message(1, text=LONG))
    await until(lambda: len(recorder.outcomes()) == 1)
    event = recorder.outcome("j1")
    assert event.args[1:3] == ("rejected", "text")
    assert "parts" in event.args[3]
    assert sim.submits == []


async def test_permanent_error_rejects_at_once(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim(faults=Faults(reject_fraction=1.0, reject_status=Status.ESME_RINVDSTADR))
    carrier = await make_carrier(sim)
    carrier.submit(message(1))
    await until(lambda: len(recorder.outcomes()) == 1)
    assert recorder.outcome("j1").args[1:3] == ("rejected", "ESME_RINVDSTADR")
    assert sim.counters.submits_rejected == 1


async def test_transient_error_retries_then_fails(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim(faults=Faults(reject_fraction=1.0, reject_status=Status.ESME_RSYSERR))
    carrier = await make_carrier(sim, max_retries=2, retry_backoff=0.05)
    start = time.monotonic()
    carrier.submit(message(1))
    await until(lambda: len(recorder.outcomes()) == 1)
    event = recorder.outcome("j1")
    assert event.args[1:3] == ("failed", "retries_exhausted")
    assert "ESME_RSYSERR" in event.args[3]
    assert sim.counters.submits_rejected == 3  # the first try and 2 retries
    assert time.monotonic() - start >= 0.05 + 0.1  # exponential back-off between them


async def test_transient_error_then_success(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim(faults=Faults(reject_fraction=1.0, reject_status=Status.ESME_RSYSERR))
    carrier = await make_carrier(sim, retry_backoff=0.2)
    carrier.submit(message(1))
    await until(lambda: sim.counters.submits_rejected == 1)
    sim.set_faults(reject_fraction=0.0)
    await until(lambda: len(recorder.outcomes()) == 1)
    assert recorder.outcome("j1").kind == "submitted"
    assert carrier.counters.retries == 1


async def test_error_policy_override(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """A carrier that sends ESME_RSYSERR for barred numbers: configured permanent."""
    sim = await make_sim(faults=Faults(reject_fraction=1.0, reject_status=Status.ESME_RSYSERR))
    carrier = await make_carrier(sim, error_policy=(("ESME_RSYSERR", "permanent"),))
    carrier.submit(message(1))
    await until(lambda: len(recorder.outcomes()) == 1)
    assert recorder.outcome("j1").args[1:3] == ("rejected", "ESME_RSYSERR")
    assert sim.counters.submits_rejected == 1


async def test_long_message_parts_in_order(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """All parts go in order (UDH sequence 1, 2, 3 with one ref) and the job is submitted
    once with the ids in part order."""
    sim = await make_sim()
    carrier = await make_carrier(sim, sessions=2)
    carrier.submit(message(1, text=LONG))
    carrier.submit(message(2, text=LONG))
    await until(lambda: len(recorder.outcomes()) == 2)
    for job in ("j1", "j2"):
        submits = [s for s in sim.submits if job_of(s) == job]
        assert len(submits) == 3
        udhs = [s.pdu.short_message[:6] for s in submits]
        assert [u[5] for u in udhs] == [1, 2, 3]
        assert len({u[3] for u in udhs}) == 1  # one concatenation ref
        event = recorder.outcome(job)
        assert event.kind == "submitted"
        assert event.args[1] == [s.message_id for s in submits]
    refs = {s.pdu.short_message[3] for s in sim.submits}
    assert len(refs) == 2  # different refs for two messages


async def test_part_rejected_after_earlier_accepted(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """Part 2 of 3 refused permanently: the job is rejected, part 3 is not sent, and the
    reason names the part already accepted (it may still reach the handset); the message
    says how many parts were accepted, which keeps it from failing over."""
    sim = await make_sim()
    carrier = await make_carrier(sim, tps=5)
    long_job = message(1, text=LONG)
    carrier.submit(long_job)
    await until(lambda: len(sim.submits) == 1)
    sim.set_faults(reject_fraction=1.0, reject_status=Status.ESME_RINVDSTADR)
    await until(lambda: len(recorder.outcomes()) == 1, timeout=3.0)
    event = recorder.outcome("j1")
    assert event.args[1:3] == ("rejected", "ESME_RINVDSTADR")
    assert "part 2/3" in event.args[3]
    assert f"parts accepted: 1={sim.submits[0].message_id}" in event.args[3]
    assert long_job.accepted == 1
    await asyncio.sleep(0.3)
    assert sim.counters.submits_rejected == 1
    assert len(sim.submits) == 1


async def test_stop_drains_in_flight_and_finishes_started_jobs(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """stop(): no new job starts, a job half-way through its parts is finished, submits in
    a window get their responses; jobs never started get no event (they stay queued in the
    gateway's store)."""
    sim = await make_sim(faults=Faults(response_delay=0.2))
    carrier = await make_carrier(sim, tps=5)
    carrier.submit(message(1, text=LONG))
    for i in range(2, 6):
        carrier.submit(message(i))
    await until(lambda: len(sim.submits) == 1)
    await carrier.stop(drain_timeout=3.0)
    assert recorder.outcome("j1").kind == "submitted"
    assert len(recorder.outcome("j1").args[1]) == 3
    assert set(recorder.outcomes()) == {"j1"}
    assert [job_of(s) for s in sim.submits] == ["j1"] * 3
    assert carrier.bound_sessions == 0
    with pytest.raises(RuntimeError):
        carrier.submit(message(9))


async def test_wants_keeps_about_two_seconds_queued(
    make_sim: SimFactory, make_carrier: CarrierFactory
) -> None:
    """Two seconds at tps 50 is 100 jobs (more than 2 x window x sessions = 40); every
    queued job counts against it. Nothing awaits between the submits and the checks, so the
    dispatcher cannot have taken a job yet: the figures are exact."""
    sim = await make_sim()
    carrier = await make_carrier(sim, tps=50, window=10, sessions=2, ready=False)
    assert carrier.wants() == 100
    for i in range(30):
        carrier.submit(message(i, priority=Priority.LOW))
    assert carrier.wants() == 70
    assert carrier.backlog() == {Priority.HIGH: 0, Priority.NORMAL: 0, Priority.LOW: 30}
    with pytest.raises(ValueError):
        carrier.submit(message(29))


async def test_stop_reports_window_at_deadline_as_unknown(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim(faults=Faults(response_delay=1.0))
    carrier = await make_carrier(sim)
    carrier.submit(message(1))
    await until(lambda: len(sim.submits) == 1)
    await carrier.stop(drain_timeout=0.1)
    assert recorder.outcome("j1").args[1:3] == ("failed", "unknown_outcome")


async def test_stop_leaves_a_job_waiting_for_retry_unreported(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """Refused with a transient error, nothing of it at the SMSC: safe to send after a
    restart, so no event."""
    sim = await make_sim(faults=Faults(reject_fraction=1.0, reject_status=Status.ESME_RSYSERR))
    carrier = await make_carrier(sim, retry_backoff=5.0)
    carrier.submit(message(1))
    await until(lambda: carrier.counters.retries == 1)
    await carrier.stop(drain_timeout=0.2)
    assert recorder.outcomes() == {}
    assert carrier.stats()["retrying"] == 0


async def test_evict_takes_back_only_jobs_that_wrote_nothing(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """Failover's hand-back: jobs of the chosen lanes that sent no part leave the carrier
    (which then never sends them); a job with a part in a window stays."""
    sim = await make_sim(faults=Faults(response_delay=0.5))
    carrier = await make_carrier(sim, tps=200, window=1)
    started = message(1)
    carrier.submit(started)
    await until(lambda: len(sim.submits) == 1)  # j1 is in the window, unanswered
    carrier.submit(message(2, priority=Priority.HIGH))
    carrier.submit(message(3))
    carrier.submit(message(4, priority=Priority.LOW))
    assert [m.job_id for m in carrier.evict(lambda m: True, 0)] == ["j2"]
    assert [m.job_id for m in carrier.evict(lambda m: m.job_id != "j3", 2)] == ["j4"]
    await until(lambda: len(recorder.outcomes()) == 2, timeout=5.0)
    assert sorted(job_of(s) for s in sim.submits) == ["j1", "j3"]
    assert set(recorder.outcomes()) == {"j1", "j3"}
