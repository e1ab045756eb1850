"""Binds against the simulator: window throughput, drops, keepalive, bind refusals."""

from __future__ import annotations

import asyncio
import time

from smppgw.engine.carrier import Carrier
from smppgw.sim.server import Faults
from smppgw.smpp.codec import decode, encode
from smppgw.smpp.constants import CommandId, Status
from smppgw.smpp.errors import PduError
from smppgw.smpp.framing import FrameReader, peek_header
from smppgw.smpp.pdu import BindTransceiverResp, DeliverSm

from .conftest import CarrierFactory, Recorder, SimFactory, job_of, message, until


async def test_window_pipelines_submits(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """With a 100 ms response delay, 40 messages through a window of 10 take ~4 round
    trips, not 40."""
    sim = await make_sim(faults=Faults(response_delay=0.1))
    carrier = await make_carrier(sim, tps=1000, window=10)
    peak = 0
    start = time.monotonic()
    for i in range(40):
        carrier.submit(message(i))
    while len(recorder.of("submitted")) < 40:
        assert time.monotonic() - start < 5, recorder.events
        peak = max(peak, carrier.stats()["window_in_use"])
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - start
    assert elapsed < 1.5, f"40 submits took {elapsed:.2f}s; one per round trip would be 4 s"
    assert peak == 10
    assert [e.args[0] for e in recorder.of("submitted")] == [f"j{i}" for i in range(40)]
    # The ids reported are the ones the SMSC wrote, per job.
    by_job = {job_of(s): s.message_id for s in sim.submits}
    for e in recorder.of("submitted"):
        assert e.args[1] == [by_job[e.args[0]]]


class _CountingTransport:
    """The session's real transport, counting ``write`` calls (one per send system call)."""

    def __init__(self, real: asyncio.Transport) -> None:
        self.real = real
        self.writes = 0
        #: Writes carrying at least one submit_sm (the others carry responses).
        self.submit_writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        if CommandId.SUBMIT_SM in _command_ids(data):
            self.submit_writes += 1
        self.real.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def _command_ids(data: bytes) -> list[int]:
    """The command_id of each PDU in ``data`` (a write of joined PDUs)."""
    ids = []
    for frame in FrameReader().feed(data):
        header = peek_header(frame)
        assert header is not None
        ids.append(header[1])
    return ids


def _counted(carrier: Carrier) -> _CountingTransport:
    session = carrier.keepers[0].session
    assert session is not None and session._transport is not None
    counting = _CountingTransport(session._transport)
    session._transport = counting  # type: ignore[assignment]
    return counting


async def test_a_burst_of_submits_is_one_write(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """The submits the dispatcher sends in one burst (no throttle wait between them) go
    out in one write (one system call, one wake-up of the SMSC) instead of one each
    (``HOLD_MAX``: at most 1 ms held, so a few on a slow machine): 10 submits, in order,
    each answered."""
    sim = await make_sim(faults=Faults(response_delay=0.2))
    carrier = await make_carrier(sim, tps=1000, window=10)
    await until(lambda: carrier.keepers[0].bound, what="the bind")
    counting = _counted(carrier)
    for i in range(10):
        carrier.submit(message(i))
    await until(lambda: len(sim.submits) == 10, what="10 submits at the SMSC")
    assert counting.submit_writes <= 3, counting.submit_writes
    await until(lambda: len(recorder.of("submitted")) == 10, what="10 responses")
    assert [job_of(s) for s in sim.submits] == [f"j{i}" for i in range(10)]


async def test_a_paced_submit_is_written_when_the_throttle_lets_it_go(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """At 10 a second the throttle spaces the sends 50-100 ms apart (its tolerance lets
    two share a wake-up only after one 50 ms late): each is a burst of its own, written
    when it is sent, not held for the next one (6 submits, 6 writes)."""
    sim = await make_sim()
    carrier = await make_carrier(sim, tps=10, window=10)
    await until(lambda: carrier.keepers[0].bound, what="the bind")
    counting = _counted(carrier)
    for i in range(6):
        carrier.submit(message(i))
    await until(lambda: len(recorder.of("submitted")) == 6, what="6 responses")
    assert counting.submit_writes == 6
    assert [job_of(s) for s in sim.submits] == [f"j{i}" for i in range(6)]


async def test_drop_mid_window_reports_unknown_outcomes(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """The SMSC closes the connection after accepting 5 submits, before answering them:
    those 5 (and any other submit in the window) are reported as unknown outcomes -- not
    as failures, not as sent -- and every other job goes through the new bind. No job is
    without an outcome, none is sent twice."""
    sim = await make_sim(faults=Faults(response_delay=0.2, drop_after_submits=5))
    carrier = await make_carrier(sim, window=10, tps=1000)
    for i in range(10):
        carrier.submit(message(i))
    await until(lambda: sim.counters.drops >= 1, what="the drop")
    sim.set_faults(drop_after_submits=None, response_delay=0.0)
    for i in range(10, 20):
        carrier.submit(message(i))
    await until(lambda: len(recorder.outcomes()) == 20, what="an outcome for every job")
    cut_off = {job_of(s) for s in sim.submits[:5]}  # accepted, never answered
    unknown = set()
    for i in range(20):
        event = recorder.outcome(f"j{i}")
        if event.kind == "finished":
            assert event.args[1:3] == ("failed", "unknown_outcome"), event
            unknown.add(f"j{i}")
    assert cut_off <= unknown
    assert carrier.counters.submit_sm_unknown == len(unknown)
    # Every job reported submitted is at the SMSC, with the id we reported.
    at_smsc = {job_of(s): s.message_id for s in sim.submits}
    for e in recorder.of("submitted"):
        assert e.args[1] == [at_smsc[e.args[0]]]
    # Nothing was sent twice: the unknown ones are not resent by default.
    jobs = [job_of(s) for s in sim.submits]
    assert len(jobs) == len(set(jobs))
    assert carrier.keepers[0].binds == 2


async def test_resend_on_timeout_opt_in(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """With resend_on_timeout, an unanswered submit is sent again (and may duplicate)."""
    sim = await make_sim(faults=Faults(no_response_fraction=1.0))
    carrier = await make_carrier(sim, response_timeout=0.2, resend_on_timeout=True)
    carrier.submit(message(1))
    await until(lambda: len(sim.submits) == 2, what="a second attempt")
    sim.set_faults(no_response_fraction=0.0)
    await until(lambda: len(recorder.outcomes()) == 1, what="the outcome")
    assert recorder.outcome("j1").kind == "submitted"
    assert len(sim.submits) == 3


async def test_dead_link_detected_by_enquire_link(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """An SMSC that stops answering is found by enquire_link, closed, and rebound."""
    sim = await make_sim()
    carrier = await make_carrier(sim, enquire_link_interval=0.2, response_timeout=0.3)
    keeper = carrier.keepers[0]
    assert keeper.binds == 1
    first = keeper.session
    assert first is not None
    for conn in list(sim.connections):
        assert conn.transport is not None
        conn.transport.pause_reading()  # the SMSC hangs: reads nothing, answers nothing
    await until(lambda: keeper.binds == 2, timeout=3.0, what="rebind after the dead link")
    assert first.closed and first.close_reason == "enquire_link unanswered"
    assert first.enquire_links_sent >= 1
    carrier.submit(message(1))
    await until(lambda: len(recorder.outcomes()) == 1)
    assert recorder.outcome("j1").kind == "submitted"


async def test_answers_smsc_enquire_link(
    make_sim: SimFactory, make_carrier: CarrierFactory
) -> None:
    """The SMSC's own enquire_link gets answered, so the SMSC keeps the bind."""
    sim = await make_sim(enquire_link_interval=0.1)
    carrier = await make_carrier(sim, enquire_link_interval=30.0)
    await asyncio.sleep(0.6)
    assert sim.counters.enquire_links_sent >= 2
    assert sim.counters.link_timeouts == 0
    assert carrier.keepers[0].binds == 1


async def test_bind_refusal_backs_off(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """While the SMSC refuses binds for 1 s, attempts are spaced out (not a storm), then the
    carrier binds and sends."""
    sim = await make_sim(faults=Faults(refuse_binds_for=1.0))
    start = time.monotonic()
    carrier = await make_carrier(sim, ready=False, reconnect_min=0.1, reconnect_max=0.8)
    carrier.submit(message(1))
    await until(lambda: carrier.bound_sessions == 1, timeout=5.0, what="bind after refusals")
    assert time.monotonic() - start >= 0.9
    keeper = carrier.keepers[0]
    assert keeper.bind_refusals >= 2
    # Back-off 0.1..0.2, 0.1..0.4, 0.1..0.8 ... : about 5 attempts in that second, never 10+.
    assert keeper.bind_attempts <= 8, keeper.bind_attempts
    assert sim.counters.binds_refused == keeper.bind_refusals
    await until(lambda: len(recorder.outcomes()) == 1)
    assert recorder.outcome("j1").kind == "submitted"


async def test_already_bound_account_is_not_stormed(
    make_sim: SimFactory, make_carrier: CarrierFactory
) -> None:
    """Two sessions on an account allowed one bind: the second keeps being refused, slowly,
    and the first one works meanwhile."""
    sim = await make_sim(max_binds=1)
    carrier = await make_carrier(sim, sessions=2, ready=False, reconnect_min=0.1, reconnect_max=0.4)
    await asyncio.sleep(1.2)
    assert carrier.bound_sessions == 1
    refused = max(k.bind_refusals for k in carrier.keepers)
    assert 2 <= refused <= 10, refused


def _bad_deliver_sm() -> tuple[bytes, int]:
    frame = encode(DeliverSm(sequence=77, source_addr="84912345678", short_message=b"hello"))
    frame = frame[:-3]  # sm_length says 5, only 2 octets follow
    frame = len(frame).to_bytes(4, "big") + frame[4:]
    try:
        decode(frame)
    except PduError as exc:
        assert exc.sequence == 77
        return frame, exc.status
    raise AssertionError("the frame decoded")


BAD_DELIVER_SM, BAD_DELIVER_SM_STATUS = _bad_deliver_sm()


async def _raw_smsc(handler: object) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    return server, server.sockets[0].getsockname()[1]


async def test_generic_nack_for_unparseable_pdu(
    make_sim: SimFactory, make_carrier: CarrierFactory
) -> None:
    """A PDU we cannot parse gets generic_nack with its sequence; a broken frame closes.

    The simulator never sends garbage, so this peer is a raw TCP server in the test."""
    received: list[object] = []
    done = asyncio.Event()

    async def smsc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader()
        bind = decode(await _read_frame(reader, frames))
        writer.write(encode(BindTransceiverResp(sequence=bind.sequence, system_id="raw")))
        # deliver_sm whose sm_length overruns the PDU, sequence 77
        writer.write(BAD_DELIVER_SM)
        received.append(decode(await _read_frame(reader, frames)))
        # an unknown command id, sequence 78
        writer.write(
            (16).to_bytes(4, "big")
            + (0x00000222).to_bytes(4, "big")
            + b"\x00" * 4
            + (78).to_bytes(4, "big")
        )
        received.append(decode(await _read_frame(reader, frames)))
        # a command_length of 8: the stream cannot be framed any more
        writer.write((8).to_bytes(4, "big") + b"\x00" * 12)
        await writer.drain()
        received.append(await reader.read())  # EOF: the client closed
        done.set()

    server, port = await _raw_smsc(smsc)
    sim = await make_sim()  # unused peer: make_carrier needs one for its defaults
    carrier = await make_carrier(
        sim, port=port, enquire_link_interval=30.0, ready=False, reconnect_min=5.0
    )
    await asyncio.wait_for(done.wait(), 5.0)
    nack1, nack2, eof = received
    assert nack1.command_id == CommandId.GENERIC_NACK and nack1.sequence == 77  # type: ignore[attr-defined]
    assert nack1.status == BAD_DELIVER_SM_STATUS != 0  # type: ignore[attr-defined]
    assert nack2.command_id == CommandId.GENERIC_NACK and nack2.sequence == 78  # type: ignore[attr-defined]
    assert nack2.status == Status.ESME_RINVCMDID  # type: ignore[attr-defined]
    assert eof == b""
    await until(lambda: carrier.bound_sessions == 0, what="the close")
    server.close()


async def _read_frame(reader: asyncio.StreamReader, frames: FrameReader) -> bytes:
    while True:
        data = await asyncio.wait_for(reader.read(4096), 5.0)
        assert data, "peer closed"
        got = frames.feed(data)
        if got:
            return got[0]
