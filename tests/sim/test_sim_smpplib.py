"""The simulator against an independent SMPP client (smpplib 2.2.4, in a thread)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import smpplib.client
import smpplib.exceptions

from smppgw.sim.server import SimAccount, SimConfig, Simulator
from smppgw.smpp.constants import MessageState, Status
from smppgw.smpp.receipt import parse_receipt


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(accounts=[SimAccount("shop", "pw"), SimAccount("slow", "pw", tps=5)])
    async with Simulator(config) as simulator:
        yield simulator


class Esme:
    """A blocking smpplib client collecting what it receives (used from a thread)."""

    def __init__(self, port: int) -> None:
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=3, allow_unknown_opt_params=True
        )
        self.responses: list[Any] = []
        self.delivered: list[Any] = []
        self.client.set_message_sent_handler(lambda pdu: self.responses.append(pdu))
        self.client.set_message_received_handler(lambda pdu: self.delivered.append(pdu))
        # Error responses reach message_sent_handler too; do not raise on them.
        self.client.set_error_pdu_handler(lambda pdu: None)

    def submit(self, registered_delivery: int = 1, text: bytes = b"Your OTP is 123456") -> None:
        self.client.send_message(
            source_addr_ton=5,
            source_addr_npi=0,
            source_addr="SHOPVN",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="84912345678",
            short_message=text,
            registered_delivery=registered_delivery,
        )

    def read_until(self, responses: int = 0, delivered: int = 0, max_reads: int = 100) -> None:
        for _ in range(max_reads):
            if len(self.responses) >= responses and len(self.delivered) >= delivered:
                return
            self.client.read_once()
        raise AssertionError(f"{len(self.responses)} responses, {len(self.delivered)} delivered")

    def close(self) -> None:
        self.client.unbind()
        self.client.disconnect()


async def test_bind_submit_and_receipt(sim: Simulator) -> None:
    def scenario() -> Esme:
        esme = Esme(sim.port)
        esme.client.connect()
        esme.client.bind_transceiver(system_id="shop", password="pw")
        esme.submit()
        esme.read_until(responses=1, delivered=1)
        esme.close()
        return esme

    esme = await asyncio.to_thread(scenario)
    resp = esme.responses[0]
    assert resp.status == 0
    message_id = resp.message_id.decode()
    assert len(sim.submits) == 1 and sim.submits[0].message_id == message_id
    assert sim.submits[0].pdu.short_message == b"Your OTP is 123456"
    receipt = esme.delivered[0]
    assert receipt.esm_class & 0x04
    assert receipt.receipted_message_id.decode().rstrip("\x00") == message_id
    assert receipt.message_state == MessageState.DELIVERED
    parsed = parse_receipt(receipt.short_message, [])  # the text alone says it all too
    assert parsed.message_id == message_id and parsed.state == "DELIVRD" and parsed.final
    assert parsed.text == "Your OTP is 123456"
    assert sim.counters.receipts_acknowledged == 1
    assert sim.counters.unbinds == 1


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [("nobody", "pw", Status.ESME_RINVSYSID), ("shop", "wrong", Status.ESME_RINVPASWD)],
)
async def test_bad_credentials(sim: Simulator, system_id: str, password: str, status: int) -> None:
    def scenario() -> int:
        esme = Esme(sim.port)
        esme.client.connect()
        try:
            esme.client.bind_transmitter(system_id=system_id, password=password)
        except smpplib.exceptions.PDUError as exc:
            return int(exc.args[1])
        finally:
            esme.client.disconnect()
        raise AssertionError("bind accepted")

    assert await asyncio.to_thread(scenario) == status
    assert sim.counters.binds_refused == 1 and sim.counters.binds_total == 0


async def test_throttling_answers_exactly_the_excess(sim: Simulator) -> None:
    def scenario() -> Esme:
        esme = Esme(sim.port)
        esme.client.connect()
        esme.client.bind_transmitter(system_id="slow", password="pw")
        for _ in range(8):  # written back to back: well within one second
            esme.submit(registered_delivery=0)
        esme.read_until(responses=8)
        esme.close()
        return esme

    esme = await asyncio.to_thread(scenario)
    statuses = [r.status for r in esme.responses]
    assert statuses == [0] * 5 + [Status.ESME_RTHROTTLED] * 3
    assert len(sim.submits) == 5  # throttled ones are not accepted
    assert sim.counters.submits_throttled == 3


async def test_receipts_wait_for_a_receiver(sim: Simulator) -> None:
    def submit_only() -> list[str]:
        esme = Esme(sim.port)
        esme.client.connect()
        esme.client.bind_transmitter(system_id="shop", password="pw")
        for _ in range(3):
            esme.submit()
        esme.read_until(responses=3)
        esme.close()
        return [r.message_id.decode() for r in esme.responses]

    ids = await asyncio.to_thread(submit_only)
    assert sim.stats()["accounts"]["shop"]["queued"] == 3  # nowhere to deliver them yet

    def receive() -> Esme:
        esme = Esme(sim.port)
        esme.client.connect()
        esme.client.bind_receiver(system_id="shop", password="pw")
        esme.read_until(delivered=3)
        esme.close()
        return esme

    esme = await asyncio.to_thread(receive)
    got = [p.receipted_message_id.decode().rstrip("\x00") for p in esme.delivered]
    assert got == ids
    assert sim.counters.receipts_acknowledged == 3
