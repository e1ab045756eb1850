"""Small, fast reproductions of bugs the fault-injection runs found, each kept as a test.

Each test names the scenario that found it; the scenario itself stays in its own file.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from smppgw.config import CarrierConfig, Secret
from smppgw.engine.carrier import Carrier
from smppgw.engine.message import OutboundMessage, Priority
from smppgw.sim.server import SimAccount, SimConfig, Simulator
from smppgw.smpp.receipt import Receipt


class SlowOutcomeEvents:
    """CarrierEvents whose ``submitted`` takes ``outcome_delay`` seconds to become durable
    (a store that is failing or slow), recording the order of what reached the store."""

    def __init__(self, outcome_delay: float) -> None:
        self.outcome_delay = outcome_delay
        self.log: list[tuple[str, str]] = []

    async def sending(self, carrier: str, job_ids: list[str]) -> None:
        pass

    async def submitted(
        self, carrier: str, message: OutboundMessage, message_ids: list[str], keys: list[str]
    ) -> None:
        await asyncio.sleep(self.outcome_delay)
        self.log.append(("submitted", message.job_id))

    async def finished(
        self, carrier: str, message: OutboundMessage, status: str, code: str, reason: str
    ) -> None:
        self.log.append((status, message.job_id))

    async def receipt(
        self, carrier: str, job_id: str, part: int, parts: int, receipt: Receipt
    ) -> None:
        self.log.append(("receipt", job_id))

    async def unmatched_receipt(self, carrier: str, receipt: Receipt) -> None:
        self.log.append(("unmatched", receipt.message_id))

    async def inbound(self, carrier: str, source: str, destination: str, text: str) -> None:
        pass

    async def lookup(self, carrier: str, normalized_id: str) -> Any:
        return None


async def test_receipt_is_refused_until_its_jobs_outcome_is_durable() -> None:
    """Found by the disk-full scenario: a receipt that came while its job's ``submitted``
    event could not be committed was acknowledged after ``receipt_hold`` and handed to the
    store, which had no parts recorded for the job yet and dropped it; the job stayed
    ``submitted`` forever. Now the receipt is answered ESME_RX_T_APPN until the outcome is
    durable, and the SMSC's redelivery is recorded after it."""
    sim = Simulator(
        SimConfig(
            accounts=[SimAccount("shop", "pw")],
            enquire_link_interval=0,
            deliver_retry_delay=0.2,
            deliver_attempts=100,
        )
    )
    events = SlowOutcomeEvents(outcome_delay=1.0)
    async with sim:
        carrier = Carrier(
            CarrierConfig(
                name="viettel",
                host="127.0.0.1",
                port=sim.port,
                system_id="shop",
                password=Secret("pw"),
                receipt_hold=0.2,
                reconnect_min=0.05,
            ),
            events,
        )
        await carrier.start()
        try:
            assert await carrier.wait_ready(5)
            carrier.submit(
                OutboundMessage("j-1", "84981234567", "hello", Priority.NORMAL, None, True, None)
            )
            deadline = time.monotonic() + 10
            while ("receipt", "j-1") not in events.log and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            await carrier.stop(1.0)
        assert events.log == [("submitted", "j-1"), ("receipt", "j-1")]
        assert carrier.counters.receipts_deferred >= 1
        stats = sim.stats()
        assert stats["receipts_sent"] > stats["receipts_acknowledged"] == 1


async def test_mqtt_reconnect_backoff_starts_over_after_each_reconnect(tmp_path) -> None:
    """Found by the long broker-outage run (ten 10 s outages): the gateway and the observer
    did not come back within 15 s of the third restart. The back-off task of the first
    outage was still asleep when the connection came back; it woke into the next outage
    and kept doubling from there, so a short blip after a long outage waited
    ``reconnect_max`` (30 s). Now each reconnect ends the old back-off."""
    from smppgw.config import MqttConfig
    from smppgw.mqtt import Message, MqttClient

    from support.broker import Mosquitto

    broker = Mosquitto(directory=tmp_path)
    broker.start()

    async def ignore(message: Message) -> None:
        pass

    took: list[float] = []
    try:
        client = MqttClient(
            MqttConfig(host=broker.host, port=broker.port, client_id="backoff"),
            on_message=ignore,
        )
        async with client:
            await client.subscribe("t/x")
            for away in (3.0, 3.0, 3.0):
                broker.stop()
                await asyncio.sleep(away)
                broker.start()
                started = time.monotonic()
                assert await client.wait_connected(40)
                took.append(time.monotonic() - started)
                await asyncio.sleep(0.2)  # up only briefly, then the next outage
    finally:
        broker.close()
    # A 3 s outage costs at most the back-off step it ends in (0.5, 1, 2 s: ~2 s).
    assert max(took) < 3.0, took
