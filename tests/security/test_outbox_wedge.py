"""Issue #11, finding 1 (the outbox part): one event the broker will not take must never
block the others. It is set aside (``dead_events``, ``smppgw_events_set_aside_total``, an
``event_set_aside`` log line) and every other event goes out.

Real mosquitto, the simulator over TCP and the gateway as a process on a real SQLite store
(:mod:`reliability.stack`); the isolation tests drive the outbox in-process against real
mosquitto, with the pre-publish checks off so that the broker itself has to reject.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest

from smppgw.config import MqttConfig
from smppgw.mqtt import Message, MqttClient
from smppgw.pipeline.outbox import DISCONNECT_REASON, OutboxPublisher
from smppgw.store import OutboxEvent, Store

from reliability.stack import GatewayProc, Observer, SimProc, _http, carrier_entry, job
from support.broker import Mosquitto

GATEWAY_USER = "smppgw"
GATEWAY_PASSWORD = "Gw-Acl-Pw-51d0"


def _status(job_id: str, status: str = "delivered") -> bytes:
    return orjson.dumps({"id": job_id, "status": status})


async def _seed(path: Path, events: list[OutboxEvent]) -> None:
    """Events left in the outbox by an earlier run (an old store)."""
    async with Store(str(path)) as store:
        await store.add_events(events)


def _dead(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT topic, reason FROM dead_events ORDER BY event_id").fetchall()
    finally:
        conn.close()


async def _eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _autosaved(broker: Mosquitto) -> None:
    """Until mosquitto has saved its state twice more (sessions made so far survive)."""
    saves = broker.log_tail(10_000).count("Saving in-memory database")
    await _eventually(
        lambda: broker.log_tail(10_000).count("Saving in-memory database") > saves + 1,
        10,
        "autosave",
    )


def _readyz(gw: GatewayProc) -> int:
    assert gw.metrics_port is not None
    status, _ = _http(gw.metrics_port, "GET", "/readyz")
    return status


async def test_a_wildcard_topic_in_an_old_store_never_wedges_the_outbox(
    tmp_path: Path, make_mosquitto: Callable[..., Mosquitto]
) -> None:
    """The reported wedge: an event to ``x/#`` already in the store when the gateway starts
    (and one over the broker's Maximum Packet Size). Both are set aside before they reach
    the wire; every job's events go out within seconds; the gateway never loses its
    connection; after a restart neither comes back."""
    broker = make_mosquitto(extra_config="max_packet_size 20000")
    sim = SimProc(tmp_path / "sim", receipt_delay=0.2).start()
    gw = GatewayProc(tmp_path / "gw", broker, [carrier_entry(sim)])
    await _seed(
        gw.store_path,
        [
            OutboxEvent("x/#", _status("old-wild"), b"corr"),
            OutboxEvent("sms/status/old-huge", b"x" * 30_000),
            OutboxEvent("sms/status/old-ok", _status("old-ok")),
        ],
    )
    ids = [f"wedge-{i:06d}" for i in range(20)]
    try:
        async with Observer(broker) as obs:
            await gw.start()
            started = time.monotonic()
            await obs.publish_many(job("wedge", i) for i in range(20))
            await obs.wait_final([*ids, "old-ok"], timeout=15)
            took = time.monotonic() - started
            await _eventually(lambda: gw.metric("smppgw_dead_events") == 2, 5, "dead gauge")
            assert gw.metric("smppgw_events_set_aside_total", reason="invalid_topic") == 1
            assert gw.metric("smppgw_events_set_aside_total", reason="too_large") == 1
            # Jobs in, events out: one connect each, never disconnected.
            assert gw.metric("smppgw_mqtt_connects_total") == 2
            assert await asyncio.to_thread(_readyz, gw) == 200
            assert await gw.terminate() == 0

            await gw.start()  # the old events stay set aside: nothing to retry
            await obs.publish(job("wedge", 99))
            await obs.wait_final(["wedge-000099"], timeout=15)
            await asyncio.sleep(1.2)  # a metrics refresh
            assert gw.metric("smppgw_events_set_aside_total") == 0
            assert gw.metric("smppgw_dead_events") == 2
            assert gw.metric("smppgw_mqtt_connects_total") == 2
            listing = _dead_events_command(gw)  # while it runs: the store is read-only here
            assert await gw.terminate() == 0
    finally:
        gw.close()
        sim.stop()
    print(f"20 jobs final {took:.1f} s after publishing, with x/# in the outbox")
    dead = _dead(gw.store_path)
    assert [topic for topic, _ in dead] == ["x/#", "sms/status/old-huge"]
    assert dead[0][1] == "topic contains a wildcard '#'"
    assert dead[1][1].startswith("packet of 30") and dead[1][1].endswith("maximum of 20000")
    assert gw.read_store().outbox == 0
    log = gw.log_text()
    assert log.count('"event_set_aside"') == 2
    # What an operator looks at: newest first, reason, payload and correlation data.
    rows = [orjson.loads(line) for line in listing.splitlines()]
    assert [(r["topic"], r["reason"]) for r in rows] == [(t, r) for t, r in reversed(dead)]
    assert rows[1]["payload"] == _status("old-wild").decode()
    assert rows[1]["correlation_data_hex"] == b"corr".hex()
    assert "protocol error" not in broker.log_tail(10_000)


def _dead_events_command(gw: GatewayProc) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "smppgw", "dead-events", "--config", str(gw.config_path), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def _acl_broker(make_mosquitto: Callable[..., Mosquitto], directory: Path) -> Mosquitto:
    """Anonymous clients are the business side (submit, read everything); the gateway's
    account may write its own topics and ``app/replies/#``, nothing else."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd not installed")
    directory.mkdir()
    passwords = directory / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), GATEWAY_USER, GATEWAY_PASSWORD],
        check=True,
        capture_output=True,
    )
    acl = directory / "acl"
    acl.write_text(
        "topic readwrite sms/#\n"
        "topic read app/#\n"
        f"user {GATEWAY_USER}\n"
        "topic read sms/submit\n"
        "topic write sms/status/#\n"
        "topic write sms/status-unmatched\n"
        "topic write sms/rejected\n"
        "topic write sms/inbound/#\n"
        "topic write app/replies/#\n"
    )
    return make_mosquitto(
        extra_config=f"allow_anonymous true\npassword_file {passwords}\nacl_file {acl}"
    )


async def _publish_with_response_topic(broker: Mosquitto, body: bytes, response: str) -> None:
    """A job with an MQTT 5 Response Topic, from an independent client."""
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-V", "mqttv5", "-h", broker.host, "-p", str(broker.port),
        "-q", "1", "-t", "sms/submit", "-m", body.decode(),
        "-D", "publish", "response-topic", response,
        "-D", "publish", "correlation-data", "corr-1",
    )  # fmt: skip
    assert await asyncio.wait_for(proc.wait(), 10) == 0


@contextlib.asynccontextmanager
async def _listening(broker: Mosquitto, topic: str) -> AsyncIterator[list[Message]]:
    got: list[Message] = []

    async def record(message: Message) -> None:
        got.append(message)

    config = MqttConfig(host=broker.host, port=broker.port, client_id=f"listen-{time.time()}")
    async with MqttClient(config, on_message=record) as client:
        await client.subscribe(topic)
        yield got


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto_pub not installed")
async def test_events_the_broker_acl_refuses_are_set_aside(
    tmp_path: Path, make_mosquitto: Callable[..., Mosquitto]
) -> None:
    """The gateway's account may not write the job's Response Topic: mosquitto answers
    PUBACK 0x87 (and, being 2.0, closes the connection too). Those copies are set aside
    with the reason code; the job's own status events and everyone else's go out."""
    broker = _acl_broker(make_mosquitto, tmp_path / "acl")
    secret = tmp_path / "mqtt-password"
    secret.write_text(GATEWAY_PASSWORD + "\n")
    secret.chmod(0o600)
    sim = SimProc(tmp_path / "sim", receipt_delay=0.2).start()
    gw = GatewayProc(
        tmp_path / "gw",
        broker,
        [carrier_entry(sim)],
        mqtt={"username": GATEWAY_USER, "password_file": str(secret)},
    )
    ids = [f"acl-{i:06d}" for i in range(20)]
    try:
        async with Observer(broker) as obs, _listening(broker, "app/#") as replies:
            await gw.start()
            denied = orjson.dumps({"id": "denied", "to": "0981234567", "text": "denied"})
            allowed = orjson.dumps({"id": "allowed", "to": "0981234567", "text": "allowed"})
            await _publish_with_response_topic(broker, denied, "app/other/1")
            await _publish_with_response_topic(broker, allowed, "app/replies/1")
            await obs.publish_many(job("acl", i) for i in range(20))
            await obs.wait_final([*ids, "denied", "allowed"], timeout=20)
            await _eventually(
                lambda: any(b'"delivered"' in m.payload for m in replies), 10, "allowed reply"
            )
            await _eventually(
                lambda: gw.metric("smppgw_events_set_aside_total", reason="refused") >= 2,
                10,
                "refusals counted",
            )
            await _eventually(lambda: _readyz(gw) == 200, 10, "ready")
            refused = gw.metric("smppgw_events_set_aside_total", reason="refused")
            assert await gw.terminate() == 0
    finally:
        gw.close()
        sim.stop()
    dead = _dead(gw.store_path)
    assert {topic for topic, _ in dead} == {"app/other/1"}
    assert {reason for _, reason in dead} == {
        "broker refused the publish: PUBACK 0x87 (not authorized)"
    }
    assert len(dead) == refused  # submitted and delivered at least
    assert {m.topic for m in replies} == {"app/replies/1"}
    assert gw.read_store().outbox == 0


# ----------------------------------------------------------------------------- isolation


class _Outbox:
    """The outbox task on a real store and a real MQTT client, checks replaceable."""

    def __init__(self, broker: Mosquitto, store: Store, **kwargs: object) -> None:
        self.drops = 0
        self.kinds: list[str] = []
        self.mqtt = MqttClient(
            MqttConfig(host=broker.host, port=broker.port, client_id=f"ob-{time.time()}"),
            on_connection_change=self._changed,
            replay_inflight=False,
            reconnect_min=0.1,
            reconnect_max=0.5,
        )
        self.outbox = OutboxPublisher(
            store,
            self.mqtt,
            on_set_aside=self.kinds.append,
            **kwargs,  # type: ignore[arg-type]
        )

    #: Called with each connection change (after counting it).
    watch: Callable[[bool], None] = staticmethod(lambda connected: None)

    def _changed(self, connected: bool) -> None:
        self.drops += not connected
        self.watch(connected)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.mqtt:
            task = asyncio.create_task(self.outbox.run())
            try:
                yield
            finally:
                self.outbox.stop()
                await asyncio.wait_for(task, 10)


def _no_checks(event: OutboxEvent, limit: int | None) -> None:
    return None


async def test_an_event_the_broker_disconnects_for_is_found_and_set_aside(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """No pre-publish check (as for a broker rule we cannot foresee): mosquitto closes the
    connection for ``x/#`` (protocol error) and for a control character (malformed). The
    outbox narrows the failed round down to the event that, published alone, is followed
    by the drop twice, sets it aside, and delivers all the rest."""
    topics = [f"iso/{i}" for i in range(40)]
    topics[17] = "x/#"
    topics[30] = "iso/\x01"
    async with Store(str(tmp_path / "gw.db")) as store, _listening(mosquitto, "iso/#") as got:
        await store.add_events([OutboxEvent(t, t.encode()) for t in topics])
        box = _Outbox(mosquitto, store, check=_no_checks)
        started = time.monotonic()
        async with box.running():
            await _eventually(lambda: len({m.topic for m in got}) == 38, 30, "the other 38")
            await _eventually(lambda: len(box.kinds) == 2, 10, "two set aside")
            assert await store.outbox_size() == 0
        took = time.monotonic() - started
        dead = await store.dead_events(10)
    print(f"isolated 2 of 40 in {took:.1f} s with {box.drops} connection drops")
    assert {d.topic for d in dead} == {"x/#", "iso/\x01"}
    assert {d.reason for d in dead} == {DISCONNECT_REASON}
    assert box.kinds == ["disconnect", "disconnect"]
    assert {m.topic for m in got} == set(topics) - {"x/#", "iso/\x01"}
    assert box.drops <= 16  # a bisection, not a storm (48 drops in 20 s before)


async def test_events_in_flight_during_a_broker_restart_are_not_set_aside(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """An ordinary outage drops every event in flight too; none of them is the cause, so
    all are published once the broker is back and nothing is set aside."""
    topics = [f"outage/{i}" for i in range(300)]
    async with Store(str(tmp_path / "gw.db")) as store, _listening(mosquitto, "outage/#") as got:
        await store.add_events([OutboxEvent(t, t.encode()) for t in topics])
        box = _Outbox(mosquitto, store)
        async with box.mqtt:
            await _autosaved(mosquitto)  # the listener's session survives the SIGKILL
            assert mosquitto.pid is not None
            os.kill(mosquitto.pid, signal.SIGSTOP)  # the round goes out and hangs
            task = asyncio.create_task(box.outbox.run())
            try:
                await _eventually(lambda: box.mqtt.inflight > 0, 10, "events in flight")
                mosquitto.kill()
                await asyncio.sleep(0.5)
                mosquitto.start()
                await _eventually(lambda: {m.topic for m in got} == set(topics), 30, "all 300")
                await _eventually(lambda: not box.outbox._suspects, 10, "isolation over")
            finally:
                box.outbox.stop()
                await asyncio.wait_for(task, 10)
        assert await store.outbox_size() == 0
        assert await store.dead_events(10) == []
    assert box.kinds == []
    assert box.drops >= 1


async def test_a_broker_that_drops_every_connection_gets_nothing_set_aside(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A crash loop: each time the outbox reconnects, the broker freezes with the events in
    flight and dies. Events end up alone in flight when it dies, more than once each, but
    since no other event gets through in between, none is taken for the cause; once the
    broker stays up all are delivered."""
    topics = [f"loop/{i}" for i in range(5)]
    async with Store(str(tmp_path / "gw.db")) as store, _listening(mosquitto, "loop/#") as got:
        await store.add_events([OutboxEvent(t, t.encode()) for t in topics])
        await _autosaved(mosquitto)  # the listener's session survives the kills
        box = _Outbox(mosquitto, store)
        freeze = True

        def watch(connected: bool) -> None:
            if connected and freeze and mosquitto.pid is not None:
                os.kill(mosquitto.pid, signal.SIGSTOP)  # before anything is acknowledged

        box.watch = watch  # type: ignore[method-assign]
        async with box.running():
            for _ in range(12):
                await _eventually(lambda: box.mqtt.inflight > 0, 10, "events in flight")
                mosquitto.kill()
                await asyncio.sleep(0.1)
                mosquitto.start()
                await _eventually(lambda: box.mqtt.connected, 10, "reconnected")
            freeze = False
            mosquitto.kill()  # the last connection is frozen too: one more restart
            mosquitto.start()
            await _eventually(lambda: {m.topic for m in got} == set(topics), 30, "all 5")
            assert await store.outbox_size() == 0
        assert await store.dead_events(10) == []
    assert box.kinds == []
    assert box.drops >= 12
