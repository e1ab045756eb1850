"""Delivery receipts: content, options, timing, queueing and redelivery."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest

from smppgw.sim.server import Faults, SimConfig, Simulator
from smppgw.smpp.constants import MessageState, Status, Tag
from smppgw.smpp.pdu import DeliverSm, SubmitSmResp
from smppgw.smpp.receipt import normalize_message_id, parse_receipt

from sim.client import RawClient, submit_sm


async def bound(sim: Simulator, mode: str = "transceiver") -> RawClient:
    client = await RawClient.connect(sim.port)
    assert (await client.bind(mode=mode)).status == 0
    return client


async def submit_id(client: RawClient, registered_delivery: int = 1) -> str:
    resp = await client.submit(registered_delivery=registered_delivery)
    assert isinstance(resp, SubmitSmResp) and resp.status == 0
    return resp.message_id


async def test_receipt_fields_and_addresses() -> None:
    async with Simulator(SimConfig()) as sim:
        client = await bound(sim)
        message_id = await submit_id(client)
        receipt = await client.deliver()
        assert receipt.esm_class == 0x04
        # A receipt comes from the handset back to the sender.
        assert (receipt.source_addr, receipt.source_addr_ton) == ("84912345678", 1)
        assert (receipt.destination_addr, receipt.dest_addr_ton) == ("SHOPVN", 5)
        assert receipt.tlv_str(Tag.RECEIPTED_MESSAGE_ID) == message_id
        assert receipt.tlv_int(Tag.MESSAGE_STATE) == MessageState.DELIVERED
        parsed = parse_receipt(receipt.short_message, receipt.tlvs)
        assert (parsed.message_id, parsed.state, parsed.text) == (message_id, "DELIVRD", "hello")
        assert parsed.submit_date is not None and parsed.done_date is not None
        await client.close()


async def test_no_receipt_unless_asked() -> None:
    async with Simulator(SimConfig()) as sim:
        client = await bound(sim)
        await submit_id(client, registered_delivery=0)
        await asyncio.sleep(0.1)
        assert not [p for p in client.inbox if isinstance(p, DeliverSm)]
        assert sim.counters.receipts_sent == 0
        await client.close()


async def test_failure_only_receipts() -> None:
    async with Simulator(SimConfig(receipt_mix={"DELIVRD": 1.0})) as sim:
        client = await bound(sim)
        await submit_id(client, registered_delivery=2)
        await asyncio.sleep(0.1)
        assert sim.counters.receipts_sent == 0  # delivered: no receipt wanted
        sim.receipts.set_mix({"UNDELIV": 1.0})
        message_id = await submit_id(client, registered_delivery=2)
        receipt = await client.deliver()
        assert receipt.tlv_str(Tag.RECEIPTED_MESSAGE_ID) == message_id
        await client.close()


async def test_failed_state_carries_error_details() -> None:
    async with Simulator(SimConfig(receipt_mix={"UNDELIV": 1.0})) as sim:
        client = await bound(sim)
        await submit_id(client)
        receipt = await client.deliver()
        assert receipt.tlv_int(Tag.MESSAGE_STATE) == MessageState.UNDELIVERABLE
        assert receipt.tlv(Tag.NETWORK_ERROR_CODE) is not None
        parsed = parse_receipt(receipt.short_message, receipt.tlvs)
        assert parsed.state == "UNDELIV" and parsed.final and parsed.error
        await client.close()


async def test_status_mix() -> None:
    config = SimConfig(receipt_mix={"DELIVRD": 0.5, "EXPIRED": 0.5})
    async with Simulator(config) as sim:
        client = await bound(sim)
        for _ in range(200):
            await submit_id(client)
        states = Counter()
        for _ in range(200):
            receipt = await client.deliver()
            states[parse_receipt(receipt.short_message, receipt.tlvs).state] += 1
        assert set(states) == {"DELIVRD", "EXPIRED"}
        assert 50 < states["DELIVRD"] < 150
        await client.close()


async def test_text_only_receipts() -> None:
    async with Simulator(SimConfig(receipt_text_only=True)) as sim:
        client = await bound(sim)
        message_id = await submit_id(client)
        receipt = await client.deliver()
        assert receipt.tlvs == []
        assert parse_receipt(receipt.short_message, []).message_id == message_id
        await client.close()


async def test_receipt_ids_in_the_other_base() -> None:
    for id_format, base in (("hex", "decimal"), ("decimal", "hex")):
        config = SimConfig(id_format=id_format, receipt_id_other_base=True)
        async with Simulator(config) as sim:
            client = await bound(sim)
            message_id = await submit_id(client)
            receipt = await client.deliver()
            in_receipt = receipt.tlv_str(Tag.RECEIPTED_MESSAGE_ID)
            assert in_receipt is not None and in_receipt != message_id
            assert int(in_receipt, 10 if base == "decimal" else 16) == int(
                message_id, 16 if id_format == "hex" else 10
            )
            assert parse_receipt(receipt.short_message, []).message_id == in_receipt
            assert normalize_message_id(in_receipt, base) == normalize_message_id(
                message_id, id_format
            )
            await client.close()


async def test_receipt_delay() -> None:
    async with Simulator(SimConfig(receipt_delay=0.3)) as sim:
        client = await bound(sim)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await submit_id(client)
        await client.deliver(timeout=2)
        assert 0.28 <= loop.time() - start < 1.5
        await client.close()


async def test_receipt_can_beat_its_submit_sm_resp() -> None:
    async with Simulator(SimConfig(faults=Faults(response_delay=0.3))) as sim:
        client = await bound(sim)
        pdu = client.send(submit_sm(registered_delivery=1))
        assert pdu is not None
        first = await client.expect(lambda p: True)
        assert isinstance(first, DeliverSm)  # the receipt, before the response
        resp = await client.response(pdu)
        assert first.tlv_str(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id  # type: ignore[attr-defined]
        await client.close()


async def test_unanswered_receipt_is_retried_then_given_up() -> None:
    config = SimConfig(deliver_timeout=0.2, deliver_attempts=2)
    async with Simulator(config) as sim:
        client = await bound(sim)
        message_id = await submit_id(client)
        first = await client.deliver(ack=False)
        second = await client.deliver(ack=False, timeout=2)
        assert first.sequence != second.sequence
        assert second.tlv_str(Tag.RECEIPTED_MESSAGE_ID) == message_id
        await asyncio.sleep(0.5)
        assert not [p for p in client.inbox if isinstance(p, DeliverSm)]
        assert sim.counters.receipts_sent == 2 and sim.counters.receipts_failed == 1
        assert sim.counters.receipts_acknowledged == 0
        await client.close()


async def test_receipt_refused_by_the_client_is_retried() -> None:
    async with Simulator(SimConfig(deliver_retry_delay=0.1)) as sim:
        client = await bound(sim)
        message_id = await submit_id(client)
        first = await client.deliver(ack=False)
        client.send(first.response(status=Status.ESME_RX_T_APPN))
        again = await client.deliver(timeout=2)
        assert again.tlv_str(Tag.RECEIPTED_MESSAGE_ID) == message_id
        await asyncio.sleep(0.05)
        assert sim.counters.receipts_acknowledged == 1 and sim.counters.receipts_sent == 2
        await client.close()


async def test_receipts_outstanding_on_a_lost_connection_are_redelivered() -> None:
    async with Simulator(SimConfig()) as sim:
        sender = await bound(sim, "transmitter")
        ids = [await submit_id(sender) for _ in range(3)]
        flaky = await bound(sim, "receiver")
        for _ in range(3):
            await flaky.deliver(ack=False)
        await flaky.close()  # gone without answering
        await asyncio.sleep(0.05)
        steady = await bound(sim, "receiver")
        got = [(await steady.deliver()).tlv_str(Tag.RECEIPTED_MESSAGE_ID) for _ in range(3)]
        assert got == ids
        await sender.close()
        await steady.close()


async def test_receipts_spread_over_receivers_within_their_window() -> None:
    async with Simulator(SimConfig(deliver_window=2)) as sim:
        sender = await bound(sim, "transmitter")
        receivers = [await bound(sim, "receiver") for _ in range(2)]
        for _ in range(6):
            await submit_id(sender)
        # Unanswered, each receiver holds its window (2) and the rest waits queued.
        held = {r: [await r.deliver(ack=False) for _ in range(2)] for r in receivers}
        for r in receivers:
            with pytest.raises(TimeoutError):
                await r.deliver(ack=False, timeout=0.1)
        stats = sim.stats()
        assert stats["deliveries_outstanding"] == 4 and stats["deliveries_queued"] == 2
        for r, pdus in held.items():
            for pdu in pdus:
                r.send(pdu.response())
        # The windows reopen: the two queued receipts go out (to whichever has room).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2
        while sim.counters.receipts_acknowledged < 6 and loop.time() < deadline:
            for r in receivers:
                with contextlib.suppress(TimeoutError):
                    await r.deliver(timeout=0.05)
        assert sim.counters.receipts_acknowledged == 6
        await sender.close()
        for r in receivers:
            await r.close()
