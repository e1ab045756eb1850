"""The outbox publisher on its own: events committed to a real SQLite store reach a real
mosquitto through the real MQTT client, and leave the store only once acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mqtt.test_mqtt import Collector

from smppgw.config import MqttConfig
from smppgw.mqtt import MqttClient
from smppgw.ops.metrics import Metrics
from smppgw.ops.telemetry import Telemetry
from smppgw.pipeline.outbox import OutboxPublisher
from smppgw.store import OutboxEvent, Store

from support.broker import Mosquitto

_ids = itertools.count()
#: Reconnect quickly after the broker comes back.
_QUICK: dict[str, float] = {"reconnect_min": 0.1, "reconnect_max": 0.5}


def mqtt_config(broker: Mosquitto) -> MqttConfig:
    return MqttConfig(
        host=broker.host,
        port=broker.port,
        client_id=f"outbox-{os.getpid()}-{next(_ids)}",
        keepalive=10,
        session_expiry=300,
    )


class Rig:
    def __init__(self, store: Store, outbox: OutboxPublisher, metrics: Metrics) -> None:
        self.store = store
        self.outbox = outbox
        self.metrics = metrics
        self.received = Collector()
        self.set_aside: list[str] = []

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Rig]:
    metrics = Metrics(process_metrics=False)
    telemetry = Telemetry(metrics)
    publisher_config = mqtt_config(mosquitto)
    async with Store(str(tmp_path / "gw.db")) as store:
        client = MqttClient(publisher_config, replay_inflight=False, **_QUICK)
        kinds: list[str] = []

        def on_set_aside(kind: str) -> None:
            kinds.append(kind)
            telemetry.event_set_aside(kind)

        outbox = OutboxPublisher(
            store,
            client,
            on_set_aside=on_set_aside,
            on_published=telemetry.events_counter(publisher_config),
        )
        rig = Rig(store, outbox, metrics)
        rig.set_aside = kinds
        async with (
            client,
            MqttClient(mqtt_config(mosquitto), on_message=rig.received, **_QUICK) as sub,
        ):
            await sub.subscribe("#", qos=1)
            assert await client.wait_connected(10.0)
            task = asyncio.get_running_loop().create_task(outbox.run())
            try:
                yield rig
            finally:
                outbox.stop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_committed_events_are_published_then_deleted(rig: Rig) -> None:
    await rig.store.add_events(
        [
            OutboxEvent("sms/status/a", b'{"id":"a"}'),
            OutboxEvent("app/replies", b'{"id":"a"}', b"corr-1"),
            OutboxEvent("sms/inbound/viettel", b'{"text":"hi"}'),
        ]
    )
    rig.outbox.wake()
    await rig.received.wait_for(3, timeout=10.0)
    got = sorted((m.topic, m.payload, m.correlation_data) for m in rig.received.messages)
    assert got == [
        ("app/replies", b'{"id":"a"}', b"corr-1"),
        ("sms/inbound/viettel", b'{"text":"hi"}', None),
        ("sms/status/a", b'{"id":"a"}', None),
    ]
    assert await rig.outbox.flush(5.0)
    assert await rig.store.outbox_size() == 0
    assert rig.sample("smppgw_events_published_total", kind="status") == 2
    assert rig.sample("smppgw_events_published_total", kind="inbound") == 1


async def test_an_event_the_broker_cannot_take_is_set_aside_not_blocking(rig: Rig) -> None:
    """A wildcard in a topic name would make the broker drop the connection: the event
    goes to dead_events with its reason, and the events around it are published."""
    await rig.store.add_events(
        [
            OutboxEvent("sms/status/before", b"1"),
            OutboxEvent("sms/status/bad+topic", b"2"),
            OutboxEvent("sms/status/after", b"3"),
        ]
    )
    rig.outbox.wake()
    await rig.received.wait_for(2, timeout=10.0)
    assert sorted(m.topic for m in rig.received.messages) == [
        "sms/status/after",
        "sms/status/before",
    ]
    assert await rig.outbox.flush(5.0)
    (dead,) = await rig.store.dead_events(10)
    assert (dead.topic, dead.payload) == ("sms/status/bad+topic", b"2")
    assert "wildcard" in dead.reason or "+" in dead.reason
    assert rig.set_aside == ["invalid_topic"]
    assert rig.sample("smppgw_events_set_aside_total", reason="invalid_topic") == 1


async def test_events_wait_in_the_store_while_the_broker_is_away(
    rig: Rig, mosquitto: Mosquitto
) -> None:
    mosquitto.stop()
    await rig.store.add_events([OutboxEvent("sms/status/late", b"x")])
    rig.outbox.wake()
    await asyncio.sleep(0.5)
    assert await rig.store.outbox_size() == 1  # kept: nothing acknowledged it
    mosquitto.start()
    await rig.received.wait_for(1, timeout=15.0)
    assert rig.received.messages[0].topic == "sms/status/late"
    assert await rig.outbox.flush(5.0)


class _ReadLog(Store):
    """The real store, noting each outbox read (``pending_events``) as it is asked."""

    def __init__(self, path: str, log: list[tuple[str, int]]) -> None:
        super().__init__(path, writer="process")
        self.log = log

    async def pending_events(self, limit: int, after_id: int = 0) -> list[OutboxEvent]:
        self.log.append(("read", after_id))
        return await super().pending_events(limit, after_id)


async def test_the_next_round_is_read_while_this_one_is_acknowledged(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The next round's read goes to the store with this round's PUBLISHes, not after its
    last PUBACK (issue 13, step 73: one outbox round at a time left the events 17,000
    behind the receipts in a 20,000-job burst); every event still goes once, in order, and
    leaves the store only once acknowledged."""
    log: list[tuple[str, int]] = []
    config = mqtt_config(mosquitto)
    async with _ReadLog(str(tmp_path / "gw.db"), log) as store:
        ids = await store.add_events(
            [OutboxEvent(f"sms/status/r{i}", str(i).encode()) for i in range(35)]
        )
        outbox = OutboxPublisher(
            store,
            client := MqttClient(config, replay_inflight=False, **_QUICK),
            batch=10,
            on_published=lambda topics: log.append(("published", len(topics))),
        )
        received = Collector()
        async with (
            client,
            MqttClient(mqtt_config(mosquitto), on_message=received, **_QUICK) as sub,
        ):
            await sub.subscribe("sms/status/#", qos=1)
            assert await client.wait_connected(10.0)
            task = asyncio.get_running_loop().create_task(outbox.run())
            try:
                await received.wait_for(35, timeout=10.0)
                assert await outbox.flush(5.0)
            finally:
                outbox.stop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert [m.payload for m in received.messages] == [str(i).encode() for i in range(35)]
    rounds = [n for what, n in log if what == "published"]
    assert rounds == [10, 10, 10, 5]
    reads = [n for what, n in log if what == "read"]
    assert reads[:4] == [0, ids[9], ids[19], ids[29]]
    # Round 1's read-ahead (after its last event) was asked before round 1 was published.
    assert log.index(("read", ids[9])) < log.index(("published", 10))
