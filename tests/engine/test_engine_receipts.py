"""Receipts and MO from the simulator: matching, holding, durability before the response."""

from __future__ import annotations

import asyncio

from smppgw.config import BindMode
from smppgw.sim.server import Faults
from smppgw.smpp.receipt import normalize_message_id

from .conftest import CarrierFactory, Recorder, SimFactory, job_of, message, until

LONG = "Don hang 1984 cua ban da duoc giao. " * 12  # GSM, 3 parts


def position(recorder: Recorder, kind: str, job_id: str) -> int:
    for i, e in enumerate(recorder.events):
        if e.kind == kind and e.args[0] == job_id:
            return i
    raise AssertionError(f"no {kind} for {job_id}")


async def test_receipts_before_their_responses_are_held_and_matched(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """Responses take 300 ms, receipts 50 ms: every receipt beats its submit_sm_resp, is
    held unanswered, matched once the id is known, and reported after the job's
    ``submitted``."""
    sim = await make_sim(receipt_delay=0.05, faults=Faults(response_delay=0.3))
    carrier = await make_carrier(sim)
    for i in range(5):
        carrier.submit(message(i))
    await until(lambda: len(recorder.of("receipt")) == 5, timeout=3.0)
    assert carrier.counters.receipts_held == 5
    ids = {job_of(s): s.message_id for s in sim.submits}
    for e in recorder.of("receipt"):
        job_id, part, parts, receipt = e.args
        assert (part, parts) == (0, 1)
        assert receipt.message_id == ids[job_id] and receipt.state == "DELIVRD"
        assert position(recorder, "submitted", job_id) < position(recorder, "receipt", job_id)
    await until(lambda: sim.counters.receipts_acknowledged == 5)
    assert recorder.of("unmatched") == []


async def test_receipts_out_of_order(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim(receipt_delay=0.4)
    carrier = await make_carrier(sim)
    carrier.submit(message(0))
    await until(lambda: len(sim.submits) == 1)
    sim.config.receipt_delay = 0.01
    carrier.submit(message(1))
    await until(lambda: len(recorder.of("receipt")) == 2, timeout=3.0)
    assert [e.args[0] for e in recorder.of("receipt")] == ["j1", "j0"]
    ids = {job_of(s): s.message_id for s in sim.submits}
    assert all(e.args[3].message_id == ids[e.args[0]] for e in recorder.of("receipt"))


async def test_receipt_ids_in_another_base(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """The SMSC answers submits with hex ids and writes receipts in decimal."""
    sim = await make_sim(id_format="hex", receipt_id_other_base=True)
    carrier = await make_carrier(sim, submit_id_base="hex", receipt_id_base="decimal")
    carrier.submit(message(1))
    await until(lambda: len(recorder.of("receipt")) == 1)
    receipt = recorder.of("receipt")[0].args[3]
    assert receipt.message_id == str(int(sim.submits[0].message_id, 16))
    assert recorder.of("unmatched") == []


async def test_each_part_receipt_maps_to_its_part(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim(receipt_delay=0.02)
    carrier = await make_carrier(sim)
    carrier.submit(message(1, text=LONG))
    await until(lambda: len(recorder.of("receipt")) == 3)
    ids = recorder.outcome("j1").args[1]
    assert ids == [s.message_id for s in sim.submits]
    got = sorted((e.args[1], e.args[2], e.args[3].message_id) for e in recorder.of("receipt"))
    assert got == [(0, 3, ids[0]), (1, 3, ids[1]), (2, 3, ids[2])]


async def test_receipt_after_restart_found_by_lookup_else_unmatched(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """Receipts for messages sent by an earlier run: the store knows one id (matched via
    ``lookup``), the other is reported unmatched after ``receipt_hold``; both answered."""
    sim = await make_sim(receipt_delay=0.5)
    first = await make_carrier(sim, events=Recorder())
    first.submit(message(1))
    first.submit(message(2))
    await until(lambda: len(sim.submits) == 2)
    await first.stop(drain_timeout=1.0)  # the receipts are still on their way
    known = sim.submits[0].message_id
    recorder.store[normalize_message_id(known, "hex")] = ("j1", 0, 1)
    await make_carrier(sim, receipt_hold=0.2)
    await until(lambda: len(recorder.of("receipt")) + len(recorder.of("unmatched")) == 2)
    (matched,) = recorder.of("receipt")
    assert matched.args[:3] == ("j1", 0, 1) and matched.args[3].message_id == known
    (unmatched,) = recorder.of("unmatched")
    assert unmatched.args[0].message_id == sim.submits[1].message_id
    await until(lambda: sim.counters.receipts_acknowledged == 2)


async def test_response_withheld_until_the_event_is_durable(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """A slow ``receipt`` coroutine: the deliver_sm stays unanswered while it runs and
    other traffic keeps flowing; the response goes once it returns."""
    sim = await make_sim()
    recorder.delay["receipt"] = 0.5
    carrier = await make_carrier(sim)
    carrier.submit(message(1))
    await until(lambda: recorder.running.get("receipt") == 1)
    assert sim.stats()["deliveries_outstanding"] == 1
    assert sim.counters.receipts_acknowledged == 0
    carrier.submit(message(2))  # the bind still works while the handler waits
    await until(lambda: "j2" in recorder.outcomes(), timeout=0.4)
    assert sim.counters.receipts_acknowledged == 0
    await until(lambda: len(recorder.of("receipt")) == 2, timeout=3.0)
    await until(lambda: sim.counters.receipts_acknowledged == 2)


async def test_failed_event_is_not_acknowledged(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """The events coroutine raises: the SMSC gets ESME_RX_T_APPN and delivers again."""
    sim = await make_sim(deliver_retry_delay=0.1)
    recorder.fail["receipt"] = 1
    carrier = await make_carrier(sim)
    carrier.submit(message(1))
    await until(lambda: len(recorder.of("receipt")) == 1, timeout=3.0)
    await until(lambda: sim.counters.receipts_acknowledged == 1)
    assert sim.counters.receipts_sent == 2


async def test_mo_reassembled(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim()
    await make_carrier(sim)
    text = "Xác nhận đơn hàng 1984, giao trước 5 giờ chiều nhé. " * 4  # UCS2, several parts
    parts = await sim.send_mo(None, "84912345678", "8079", text)
    assert parts >= 3
    await sim.send_mo(None, "84912345678", "8079", "1")
    await until(lambda: len(recorder.of("inbound")) == 2)
    assert [e.args for e in recorder.of("inbound")] == [
        ("84912345678", "8079", text),
        ("84912345678", "8079", "1"),
    ]
    await until(lambda: sim.counters.mo_acknowledged == parts + 1)


async def test_transmitter_receiver_pairs(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """bind: transmitter_receiver holds a TX and an RX bind per session; submits go on TX,
    receipts and MO arrive on RX."""
    sim = await make_sim(receipt_delay=0.02)
    carrier = await make_carrier(sim, bind=BindMode.TRANSMITTER_RECEIVER, sessions=1)
    assert carrier.bound_sessions == 2
    assert sorted(k.mode for k in carrier.keepers) == ["receiver", "transmitter"]
    carrier.submit(message(1))
    await sim.send_mo(None, "84912345678", "8079", "hi")
    await until(lambda: len(recorder.of("receipt")) == 1 and len(recorder.of("inbound")) == 1)
    rx = next(k for k in carrier.keepers if k.mode == "receiver").session
    assert rx is not None and rx.delivers == 2


async def test_stop_with_a_held_receipt_leaves_it_unanswered(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """A receipt still held at stop is not acknowledged: the SMSC keeps it for later."""
    sim = await make_sim(receipt_delay=0.01, faults=Faults(response_delay=0.5))
    carrier = await make_carrier(sim)
    carrier.submit(message(1))
    await until(lambda: sim.counters.receipts_sent == 1)
    await asyncio.sleep(0.02)
    await carrier.stop(drain_timeout=0.1)
    assert sim.counters.receipts_acknowledged == 0
    assert recorder.of("receipt") == []


async def test_final_receipt_frees_its_matcher_entry(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    """A long-running gateway must not keep every finished message id in memory."""
    sim = await make_sim(receipt_delay=0.05)
    carrier = await make_carrier(sim)
    for i in range(20):
        carrier.submit(message(i))
    await until(lambda: len(recorder.of("receipt")) == 20, timeout=5)
    await until(lambda: len(carrier.matcher) == 0, timeout=2)
