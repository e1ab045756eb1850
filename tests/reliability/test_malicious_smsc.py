"""Scenario 6: a malicious (or badly broken) SMSC.

* In process, many attacks against one carrier's session over real TCP: random bytes,
  mutated deliver_sm (MO and receipts), unknown commands, absurd command_length, PDUs
  that never finish, stray responses. After each one the connection must be either closed
  by the gateway or still answering (an enquire_link gets its response): never hung, and
  no exception may escape into the event loop.
* End to end, ``smppgw run`` with two carriers: one bound to the malicious server (which
  also floods it with deliver_sm), one to ``smppgw sim``. The gateway survives, and the
  good carrier keeps delivering.

Attack streams are drawn from a seeded RNG (printed, and settable with
``SMPPGW_FUZZ_SEED``) so any failure can be replayed.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from smppgw.config import CarrierConfig, Secret
from smppgw.engine.carrier import Carrier
from smppgw.engine.message import OutboundMessage
from smppgw.smpp.codec import encode
from smppgw.smpp.constants import CommandId
from smppgw.smpp.pdu import EnquireLink, GenericNack, SubmitSmResp
from smppgw.smpp.receipt import Receipt

from reliability.conftest import size
from reliability.evil import EvilConnection, EvilSmsc, header, mo, mutate, receipt
from reliability.stack import GatewayProc, Observer, SimProc, carrier_entry, job, reconcile
from support.broker import Mosquitto

FRAME_TIMEOUT = 0.3


class Events:
    """CarrierEvents that keep what the SMSC delivered (nothing is slow or failing)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.mo: list[str] = []

    async def sending(self, carrier: str, job_ids: list[str]) -> None:
        self.calls["sending"] += 1

    async def submitted(
        self, carrier: str, message: OutboundMessage, message_ids: list[str], keys: list[str]
    ) -> None:
        self.calls["submitted"] += 1

    async def finished(
        self, carrier: str, message: OutboundMessage, status: str, code: str, reason: str
    ) -> None:
        self.calls["finished"] += 1

    async def receipt(
        self, carrier: str, job_id: str, part: int, parts: int, receipt: Receipt
    ) -> None:
        self.calls["receipt"] += 1

    async def unmatched_receipt(self, carrier: str, receipt: Receipt) -> None:
        self.calls["unmatched"] += 1

    async def inbound(self, carrier: str, source: str, destination: str, text: str) -> None:
        self.calls["inbound"] += 1
        self.mo.append(text)

    async def lookup(self, carrier: str, normalized_id: str) -> Any:
        return None


def attack_bytes(rng: random.Random, seq: int) -> tuple[str, bytes]:
    """One attack: (kind, octets to write)."""
    kind = rng.choice(
        [
            "random",
            "mutated_mo",
            "mutated_mo",
            "mutated_receipt",
            "mutated_receipt",
            "unknown_command",
            "absurd_length",
            "short_length",
            "partial",
            "stray_response",
            "valid",
        ]
    )
    if kind == "random":
        return kind, rng.randbytes(rng.randrange(1, 300))
    if kind == "mutated_mo":
        return kind, mutate(mo(seq, f"reply {rng.randrange(10**6)}"), rng, rng.randrange(1, 6))
    if kind == "mutated_receipt":
        return kind, mutate(receipt(seq, format(rng.randrange(1 << 32), "X")), rng, 3)
    if kind == "unknown_command":
        cid = rng.choice([0x00000010, 0x0000FFFF, 0x7FFFFFFF, 0x80000010, 0x00010200])
        body = rng.randbytes(rng.randrange(0, 40))
        return kind, header(16 + len(body), cid, 0, seq) + body
    if kind == "absurd_length":
        length = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 1 << 20, 65537])
        return kind, header(length, CommandId.DELIVER_SM, 0, seq) + rng.randbytes(64)
    if kind == "short_length":
        return kind, struct.pack(">I", rng.randrange(0, 16)) + rng.randbytes(20)
    if kind == "partial":
        full = mo(seq, "never finished")
        return kind, full[: rng.randrange(1, len(full))]
    if kind == "stray_response":
        pdu = rng.choice(
            [
                SubmitSmResp(sequence=rng.randrange(1, 1 << 31), message_id="ABC"),
                GenericNack(sequence=rng.randrange(1, 1 << 31), status=3),
                EnquireLink(sequence=seq).response(),
            ]
        )
        return kind, encode(pdu)
    return kind, mo(seq, f"valid {seq}")


async def test_session_survives_random_and_mutated_pdus(report) -> None:
    seed = int(os.environ.get("SMPPGW_FUZZ_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    rounds = size(250, 2000)
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    outcomes: Counter[tuple[str, str]] = Counter()
    events = Events()
    try:
        async with EvilSmsc() as evil:
            carrier = Carrier(
                CarrierConfig(
                    name="evil",
                    host="127.0.0.1",
                    port=evil.port,
                    system_id="shop",
                    password=Secret("pw"),
                    frame_timeout=FRAME_TIMEOUT,
                    response_timeout=1.0,
                    receipt_hold=0.05,
                    reconnect_min=0.01,
                    reconnect_max=0.05,
                ),
                events,
            )
            await carrier.start()
            try:
                conn: EvilConnection | None = None
                for i in range(rounds):
                    if conn is None or conn.eof:
                        conn = await asyncio.wait_for(evil.bound.get(), 5)
                    kind, data = attack_bytes(rng, conn.next_seq())
                    conn.write(data)
                    await conn.drain()
                    started = time.monotonic()
                    state = await conn.probe(FRAME_TIMEOUT + 1.5)
                    outcomes[(kind, state)] += 1
                    assert state != "hung", (
                        f"seed {seed}, round {i}: {kind} {data[:64].hex()} left the session "
                        f"hung for {time.monotonic() - started:.1f} s"
                    )
                    if state == "closed":
                        conn = None
            finally:
                await carrier.stop(1.0)
    finally:
        loop.set_exception_handler(previous)
    closed = sum(n for (_, state), n in outcomes.items() if state == "closed")
    report(
        scenario="malicious SMSC: random and mutated PDUs against one session",
        seed=seed,
        attacks=rounds,
        connections_closed_by_gateway=closed,
        outcomes={f"{k}/{s}": n for (k, s), n in sorted(outcomes.items())},
        carrier_counters={
            k: v
            for k, v in carrier.stats().items()
            if k.startswith(("receipts", "mo_", "event_errors")) and v
        },
        events=dict(events.calls),
    )
    assert not loop_errors, loop_errors[:3]
    assert carrier.counters.event_errors == 0
    # Every kind that cannot be framed must close the connection; valid PDUs must not. (An
    # unfinished PDU may be completed by the probe's own octets, so it may end "alive";
    # what it must never do is hang, checked above.)
    for kind in ("absurd_length", "short_length"):
        assert outcomes[(kind, "alive")] == 0, kind
    assert outcomes[("partial", "closed")] > 0
    assert outcomes[("valid", "closed")] == 0


@pytest.mark.timeout(size(180, 1200))
async def test_malicious_smsc_does_not_hurt_the_gateway_or_the_other_carrier(
    tmp_path: Path, mosquitto: Mosquitto, report
) -> None:
    """``smppgw run`` with carrier "evil" bound to the malicious server and "viettel" to
    ``smppgw sim``: the evil one floods deliver_sm, sends garbage, PDUs that never end and
    absurd lengths, over and over; the gateway stays up and viettel's jobs all arrive."""
    n_jobs = size(400, 4000)
    flood = size(5000, 50_000)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    attacks: Counter[str] = Counter()
    max_attacks = size(40, 1000)
    flood_answered = 0

    async def attack(conn: EvilConnection) -> None:
        nonlocal flood_answered
        round_ = sum(attacks.values())
        if round_ == 0:
            # A flood of MO, written as fast as the socket takes them, answered or not.
            attacks["flood"] += 1
            for i in range(flood):
                conn.write(mo(conn.next_seq(), f"flood {i:06d}"))
                if i % 500 == 0:
                    await conn.drain()
            await conn.drain()
            deadline = time.monotonic() + 60
            while flood_answered < flood and time.monotonic() < deadline:
                pdu = await conn.read_pdu(5.0)
                if pdu is None:
                    break
                if pdu.command_id == CommandId.DELIVER_SM_RESP:
                    flood_answered += 1
        # Then attacks, one after another, on this connection until one gets it closed.
        while sum(attacks.values()) < max_attacks:
            kind, data = attack_bytes(rng, conn.next_seq())
            attacks[kind] += 1
            if kind == "partial":  # and then trickle, one octet at a time, never finishing
                conn.write(data[:16])
                for _ in range(200):
                    await asyncio.sleep(0.1)
                    conn.write(b"\x00")
                    await conn.drain()
                    if conn.writer.is_closing() or conn.reader.at_eof():
                        break
            else:
                conn.write(data)
                await conn.drain()
            if await conn.probe(10.0) != "alive":
                return

    sim = SimProc(tmp_path / "sim", receipt_delay=0.3).start()
    async with EvilSmsc(attack) as evil:
        evil_carrier = carrier_entry(
            sim,
            name="evil",
            port=evil.port,
            prefixes=["8490"],
            frame_timeout=2.0,
            reconnect_min=0.2,
            reconnect_max=0.5,
        )
        gw = GatewayProc(tmp_path / "gw", mosquitto, [carrier_entry(sim), evil_carrier])
        ids = [f"g-{i:06d}" for i in range(n_jobs)]
        try:
            async with Observer(mosquitto) as obs:
                await gw.start()
                rss_start = gw.rss()
                started = time.monotonic()
                await obs.publish_many(job("g", i) for i in range(n_jobs))
                await obs.wait_final(ids, timeout=size(60, 300))
                # Let the evil server run its attacks for a while longer.
                while sum(attacks.values()) < max_attacks and time.monotonic() - started < 120:
                    await asyncio.sleep(0.5)
                assert gw.alive, gw.log_text()[-3000:]
                peak = gw.note_rss()
                await sim.wait_quiet()
                ledger = await _finish(gw, sim, obs, ids)
        finally:
            gw.close()
            sim.stop()
    log = gw.log_text()
    mo_published = sum(1 for text in obs.inbound if text.startswith("flood "))
    report(
        scenario="malicious SMSC next to a good one (subprocess gateway)",
        seed=seed,
        attacks=dict(attacks),
        evil_connections=len(evil.connections),
        flood_deliver_sm=flood,
        flood_answered=flood_answered,
        flood_mo_published=mo_published,
        rss_start_mb=round(rss_start / 2**20, 1),
        peak_rss_mb=round(peak / 2**20, 1),
        closed_for_incomplete_pdu=log.count("not completed within frame_timeout"),
        framing_errors=log.count("framing error"),
        **ledger.summary(),
    )
    ledger.assert_clean(allow_unknown=False)
    assert ledger.outcomes == {"delivered": n_jobs}
    assert flood_answered == flood and mo_published == flood
    assert attacks["partial"] == 0 or "not completed within frame_timeout" in log
    assert '"level":"critical"' not in log


async def _finish(gw: GatewayProc, sim: SimProc, obs: Observer, ids: list[str]):
    assert await gw.terminate() == 0
    await asyncio.sleep(0.3)
    submits = await sim.asubmits()
    return reconcile(ids, obs, submits, store=gw.read_store())


async def test_deliver_sm_flood_is_bounded_by_pausing_reads(report) -> None:
    """An SMSC writes 20,000 deliver_sm without waiting for a single response while the
    gateway's events are slow: the session stops reading at MAX_DELIVER_HANDLERS handlers
    in progress (TCP pushes back) instead of starting 20,000 tasks, and still answers all.
    Without the limit the peak was 12,617 handlers (measured)."""
    from smppgw.smpp import session as session_module

    flood = size(20_000, 100_000)
    events = Events()

    async def slow_inbound(carrier: str, source: str, destination: str, text: str) -> None:
        await asyncio.sleep(0.002)
        events.mo.append(text)

    events.inbound = slow_inbound  # type: ignore[method-assign]
    answered = 0

    async def attack(conn: EvilConnection) -> None:
        nonlocal answered
        writer = asyncio.create_task(_write_flood(conn, flood))
        while answered < flood:
            pdu = await conn.read_pdu(10.0)
            if pdu is None:
                break
            if pdu.command_id == CommandId.DELIVER_SM_RESP:
                answered += 1
        await writer

    async with EvilSmsc(attack) as evil:
        carrier = Carrier(
            CarrierConfig(
                name="evil",
                host="127.0.0.1",
                port=evil.port,
                system_id="shop",
                password=Secret("pw"),
                reconnect_min=0.05,
            ),
            events,
        )
        await carrier.start()
        peak = 0
        try:
            deadline = time.monotonic() + size(60, 300)
            while answered < flood and time.monotonic() < deadline:
                session = carrier.keepers[0].session
                if session is not None:
                    peak = max(peak, len(session._tasks))
                await asyncio.sleep(0.005)
        finally:
            await carrier.stop(1.0)
    report(
        scenario="deliver_sm flood against one session (slow events)",
        flood=flood,
        answered=answered,
        peak_handlers=peak,
        limit=session_module.MAX_DELIVER_HANDLERS,
    )
    assert answered == flood and len(events.mo) == flood
    # Reading stops after the read that crossed the limit: that read's PDUs (at most
    # 256 KiB of them, ~60 octets each here) still start their handlers.
    assert session_module.MAX_DELIVER_HANDLERS <= 1000
    assert peak <= 1000 + 256 * 1024 // 60


async def _write_flood(conn: EvilConnection, n: int) -> None:
    for i in range(n):
        conn.write(mo(conn.next_seq(), f"flood {i:06d}"))
        if i % 200 == 0:
            await conn.drain()
    await conn.drain()
