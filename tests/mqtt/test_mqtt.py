"""MqttClient against a real mosquitto: acknowledgement timing, redelivery, flow control,
persistent sessions and broker outages."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from smppgw.config import MqttConfig
from smppgw.mqtt import Message, MqttClient, MqttUnavailable, PublishLost, PublishRefused
from smppgw.mqtt._gmqtt import CorkedTransport

from support.broker import Mosquitto

REPO = Path(__file__).resolve().parents[2]
_ids = itertools.count()


def config(broker: Mosquitto, client_id: str | None = None, **kwargs: object) -> MqttConfig:
    return MqttConfig(
        host=broker.host,
        port=broker.port,
        client_id=client_id or f"test-{os.getpid()}-{next(_ids)}",
        keepalive=10,
        session_expiry=300,
        **kwargs,  # type: ignore[arg-type]
    )


def client(cfg: MqttConfig, **kwargs: object) -> MqttClient:
    kwargs.setdefault("reconnect_min", 0.1)
    kwargs.setdefault("reconnect_max", 0.5)
    return MqttClient(cfg, **kwargs)  # type: ignore[arg-type]


class Collector:
    """An on_message handler that records what it was given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)
        self._changed.set()

    @property
    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Message]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def publisher(broker: Mosquitto) -> AsyncIterator[MqttClient]:
    async with client(config(broker)) as pub:
        assert pub.connected
        yield pub


async def test_publish_receive_round_trip(mosquitto: Mosquitto) -> None:
    got = Collector()
    async with client(config(mosquitto), on_message=got) as sub, publisher(mosquitto) as pub:
        await sub.subscribe("rt/topic")
        await pub.publish("rt/topic", b"hello \xe2\x9c\x93")
        await pub.publish("rt/topic", b"second", qos=0)
        [first, second] = await got.wait_for(2)
    assert first.topic == "rt/topic"
    assert first.payload == b"hello \xe2\x9c\x93"
    assert first.qos == 1
    assert first.response_topic is None and first.correlation_data is None
    assert first.retain is False
    assert second.payload == b"second" and second.qos == 0


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto_pub not installed")
async def test_response_topic_and_correlation_data_are_surfaced(mosquitto: Mosquitto) -> None:
    got = Collector()
    async with client(config(mosquitto), on_message=got) as sub:
        await sub.subscribe("rr/submit")
        # An independent MQTT 5 implementation sets the properties.
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-V", "mqttv5", "-h", mosquitto.host, "-p", str(mosquitto.port),
            "-q", "1", "-t", "rr/submit", "-m", '{"id":"j1"}',
            "-D", "publish", "response-topic", "shop/replies/42",
            "-D", "publish", "correlation-data", "order-1984",
        )  # fmt: skip
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        [message] = await got.wait_for(1)
        # ... and our publish echoes Correlation Data back on the Response Topic.
        replies = Collector()
        async with client(config(mosquitto), on_message=replies) as listener:
            await listener.subscribe("shop/replies/#")
            assert message.response_topic is not None
            await sub.publish(
                message.response_topic, b"status", correlation_data=message.correlation_data
            )
            [reply] = await replies.wait_for(1)
    assert message.payload == b'{"id":"j1"}'
    assert message.response_topic == "shop/replies/42"
    assert message.correlation_data == b"order-1984"
    assert reply.topic == "shop/replies/42"
    assert reply.correlation_data == b"order-1984"


VICTIM = textwrap.dedent(
    """
    import asyncio, sys
    from smppgw.mqtt import MqttClient
    from smppgw.config import MqttConfig

    async def handler(message):
        print("HANDLING", message.payload.decode(), flush=True)
        if message.payload.startswith(b"slow"):
            await asyncio.sleep(3600)          # the job is never committed
        print("HANDLED", message.payload.decode(), flush=True)

    async def main():
        cfg = MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), client_id=sys.argv[2],
                         session_expiry=300)
        async with MqttClient(cfg, on_message=handler) as mqtt:
            await mqtt.subscribe("jobs/victim")
            print("READY", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def _expect_line(stream: asyncio.StreamReader, wanted: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"victim exited before printing {wanted!r}")
            if line.strip() == wanted:
                return


async def test_puback_withheld_until_handler_returns(mosquitto: Mosquitto) -> None:
    """kill -9 while a handler runs: its message comes back; a finished one does not."""
    client_id = f"victim-{os.getpid()}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", VICTIM, str(mosquitto.port), client_id,
        stdout=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        await _expect_line(proc.stdout, "READY")
        async with publisher(mosquitto) as pub:
            await pub.publish("jobs/victim", b"fast-1")
            await _expect_line(proc.stdout, "HANDLED fast-1")
            await pub.publish("jobs/victim", b"slow-1")
            await _expect_line(proc.stdout, "HANDLING slow-1")
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    got = Collector()
    async with client(config(mosquitto, client_id), on_message=got):
        await got.wait_for(1)
        await asyncio.sleep(0.5)  # anything else would have arrived by now
    assert got.payloads == [b"slow-1"]


async def test_handler_raising_gets_the_message_redelivered(mosquitto: Mosquitto) -> None:
    attempts: list[bytes] = []

    async def flaky(message: Message) -> None:
        attempts.append(message.payload)
        if len(attempts) == 1:
            raise RuntimeError("store is full")

    cfg = config(mosquitto)
    async with client(cfg, on_message=flaky) as sub, publisher(mosquitto) as pub:
        await sub.subscribe("flaky/topic")
        await pub.publish("flaky/topic", b"job-7")
        await until(lambda: len(attempts) >= 2)
        assert sub.connected or await sub.wait_connected(5)
        await asyncio.sleep(0.3)
    assert attempts == [b"job-7", b"job-7"]

    # The second, successful attempt was acknowledged: nothing comes back.
    again = Collector()
    async with client(cfg, on_message=again):
        await asyncio.sleep(0.5)
    assert again.messages == []


class SlowHandler:
    """An on_message handler that takes ``seconds`` and counts how many run at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running = 0
        self.peak = 0
        self.done = 0

    async def __call__(self, message: Message) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(self.seconds)
        self.running -= 1
        self.done += 1


async def test_handlers_run_concurrently(mosquitto: Mosquitto) -> None:
    slow = SlowHandler(0.2)
    async with client(config(mosquitto), on_message=slow) as sub, publisher(mosquitto) as pub:
        await sub.subscribe("conc/topic")
        started = time.monotonic()
        await asyncio.gather(*(pub.publish("conc/topic", b"%d" % i) for i in range(100)))
        await until(lambda: slow.done == 100, timeout=10)
        elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"100 handlers of 0.2 s took {elapsed:.1f} s: serialised?"
    assert slow.peak >= 50


async def test_intake_reads_pause_while_receive_maximum_handlers_run(
    mosquitto: Mosquitto,
) -> None:
    """Once PUBACKs flow, mosquitto sends well past our Receive Maximum (measured: 2,900
    handlers at once with 100). The client stops reading the socket at ``receive_maximum``
    running handlers instead of starting one for every queued job."""
    slow = SlowHandler(0.01)
    total = 40_000
    cfg = config(mosquitto)
    async with client(cfg, on_message=slow, receive_maximum=50) as sub:
        await sub.subscribe("flow/topic")
    async with publisher(mosquitto) as pub:  # queued while the subscriber is away
        await asyncio.gather(*(pub.publish("flow/topic", b"x" * 100) for i in range(total)))
    async with client(cfg, on_message=slow, receive_maximum=50):
        await until(lambda: slow.done == total, timeout=30)
    # Bounded by receive_maximum plus what one socket read held (256 KiB of 100-byte
    # messages at most), instead of by the queue.
    assert slow.peak <= 50 + 3500, f"{slow.peak} handlers at once with receive_maximum 50"


async def test_publish_respects_receive_maximum(make_mosquitto: Callable[..., Mosquitto]) -> None:
    """500 concurrent publishes against mosquitto's default Receive Maximum of 20."""
    broker = make_mosquitto(max_inflight_messages=20)
    got = Collector()
    peak = 0
    async with client(config(broker), on_message=got) as sub, publisher(broker) as pub:
        await sub.subscribe("rm/topic")
        assert pub.window < 20

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, pub.inflight)
                await asyncio.sleep(0)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(pub.publish("rm/topic", b"%d" % i) for i in range(500)))
        sampler.cancel()
        assert pub.inflight == 0
        await got.wait_for(500)
    assert sorted(int(p) for p in got.payloads) == list(range(500))
    assert 1 < peak <= pub.window


async def test_publish_soon_is_the_puback_future_without_a_task(mosquitto: Mosquitto) -> None:
    """The outbox's round: a future per event that resolves at its PUBACK, no task."""
    got = Collector()
    async with client(config(mosquitto), on_message=got) as sub, publisher(mosquitto) as pub:
        await sub.subscribe("soon/#")
        futures = [pub.publish_soon(f"soon/{i}", b"x", correlation_data=b"c") for i in range(50)]
        assert not any(isinstance(f, asyncio.Task) for f in futures)
        assert await asyncio.gather(*futures) == [None] * 50
        received = await got.wait_for(50)
    assert sorted(m.topic for m in received) == sorted(f"soon/{i}" for i in range(50))
    assert {m.correlation_data for m in received} == {b"c"}


class _CountingWrites:
    """The connection's real transport, counting ``write`` calls (one per send call)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_the_publishes_of_one_turn_are_two_socket_writes(mosquitto: Mosquitto) -> None:
    """50 PUBLISHes queued in one event-loop turn reach the socket in two writes (the
    first at once, the other 49 joined at the turn's end), in order, and every one is
    delivered and acknowledged."""
    got = Collector()
    async with client(config(mosquitto), on_message=got) as sub, publisher(mosquitto) as pub:
        await sub.subscribe("corked/#")
        corked = pub._gm._connection._protocol._transport
        assert isinstance(corked, CorkedTransport)
        assert pub._gm._connection._transport is corked
        counting = _CountingWrites(corked.real)
        corked.real = counting
        futures = [pub.publish_soon(f"corked/{i}", b"x") for i in range(50)]
        assert await asyncio.gather(*futures) == [None] * 50
        assert counting.writes == 2
        received = await got.wait_for(50)
    assert [m.topic for m in received] == [f"corked/{i}" for i in range(50)]


async def test_publish_waits_for_the_puback(mosquitto: Mosquitto) -> None:
    """A frozen broker (SIGSTOP) never answers: publish must not return before it does."""
    async with publisher(mosquitto) as pub:
        assert mosquitto.pid is not None
        os.kill(mosquitto.pid, signal.SIGSTOP)
        try:
            task = asyncio.create_task(pub.publish("frozen/topic", b"x"))
            await asyncio.sleep(0.3)
            assert not task.done()
            assert pub.inflight == 1
            with pytest.raises(MqttUnavailable, match="no PUBACK"):
                await pub.publish("frozen/topic", b"y", timeout=0.2)
        finally:
            os.kill(mosquitto.pid, signal.SIGCONT)
        await asyncio.wait_for(task, 5)
        await until(lambda: pub.inflight == 0)


async def test_inflight_publish_fails_when_the_connection_drops(mosquitto: Mosquitto) -> None:
    async with publisher(mosquitto) as pub:
        assert mosquitto.pid is not None
        os.kill(mosquitto.pid, signal.SIGSTOP)
        task = asyncio.create_task(pub.publish("drop/topic", b"x"))
        await asyncio.sleep(0.2)
        mosquitto.kill()  # a stopped process still dies; the kernel closes its sockets
        with pytest.raises(MqttUnavailable):
            await asyncio.wait_for(task, 5)


async def test_refused_puback_fails_the_publish_with_its_reason_code(
    make_mosquitto: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    """gmqtt takes any PUBACK for a success; a failure reason code must reach the caller
    (mosquitto denies a publish its ACL forbids with 0x87; 2.0 then also closes the
    connection, eclipse-mosquitto/mosquitto#2579, and the client reconnects)."""
    acl = tmp_path / "acl"
    acl.write_text("topic write allowed/#\n")  # anonymous clients: this topic tree only
    broker = make_mosquitto(extra_config=f"allow_anonymous true\nacl_file {acl}")
    async with publisher(broker) as pub:
        with pytest.raises(PublishRefused) as refused:
            await pub.publish("denied/topic", b"x")
        assert refused.value.reason_code == 0x87
        assert "0x87 (not authorized)" in str(refused.value)
        async with asyncio.timeout(10):  # what is allowed goes through (once reconnected)
            while True:
                try:
                    await pub.publish("allowed/topic", b"y")
                    break
                except MqttUnavailable:
                    await pub.wait_connected(1)
        assert pub.inflight == 0


async def test_max_packet_size_comes_from_the_connack(
    make_mosquitto: Callable[..., Mosquitto], mosquitto: Mosquitto
) -> None:
    async with publisher(make_mosquitto(extra_config="max_packet_size 5000")) as pub:
        assert pub.max_packet_size == 5000
    async with publisher(mosquitto) as pub:
        assert pub.max_packet_size is None


@pytest.mark.parametrize("replay", [True, False])
async def test_inflight_publishes_are_replayed_unless_told_not_to(
    mosquitto: Mosquitto, replay: bool
) -> None:
    """In flight when the connection drops: PublishLost; on reconnect gmqtt resends the
    packet, except with ``replay_inflight=False`` (the caller publishes again itself)."""
    got = Collector()
    async with client(config(mosquitto), on_message=got) as listener:
        await listener.subscribe("replay/topic")
        async with client(config(mosquitto), replay_inflight=replay) as gw:
            assert mosquitto.pid is not None
            # Let an autosave pass, so the sessions survive the SIGKILL below.
            saves = mosquitto.log_tail(1000).count("Saving in-memory database")
            await until(
                lambda: mosquitto.log_tail(1000).count("Saving in-memory database") > saves + 1,
                timeout=10,
            )
            os.kill(mosquitto.pid, signal.SIGSTOP)
            task = asyncio.create_task(gw.publish("replay/topic", b"in flight"))
            await until(lambda: gw.inflight == 1)
            mosquitto.kill()
            with pytest.raises(PublishLost):
                await asyncio.wait_for(task, 5)
            assert gw.inflight == (1 if replay else 0)
            mosquitto.start()
            assert await gw.wait_connected(5)
            await until(lambda: gw.inflight == 0)
            await gw.publish("replay/topic", b"after")
        await until(lambda: b"after" in got.payloads)
        await asyncio.sleep(0.2)
    assert (b"in flight" in got.payloads) is replay


async def test_broker_restart(mosquitto: Mosquitto) -> None:
    """Broker away: not connected, publish fails fast; back: reconnected, same subscription."""
    changes: list[bool] = []
    got = Collector()
    cfg = config(mosquitto)
    async with client(cfg, on_message=got, on_connection_change=changes.append) as gw:
        await gw.subscribe("restart/topic")
        mosquitto.stop()
        await until(lambda: not gw.connected)
        started = time.monotonic()
        with pytest.raises(MqttUnavailable):
            await gw.publish("restart/topic", b"lost?")
        assert time.monotonic() - started < 0.1

        mosquitto.start()
        assert await gw.wait_connected(5)
        async with publisher(mosquitto) as pub:
            await pub.publish("restart/topic", b"after restart")
        await got.wait_for(1)
        await gw.publish("restart/topic", b"gateway publishes again")
        await got.wait_for(2)
    assert got.payloads == [b"after restart", b"gateway publishes again"]
    assert changes == [True, False, True, False]


async def test_messages_queued_while_away_survive_a_broker_restart(mosquitto: Mosquitto) -> None:
    cfg = config(mosquitto)
    async with client(cfg, on_message=Collector()) as gw:
        await gw.subscribe("away/topic")
    async with publisher(mosquitto) as pub:
        for i in range(20):
            await pub.publish("away/topic", b"%d" % i)
    mosquitto.stop()
    mosquitto.start()
    got = Collector()
    async with client(cfg, on_message=got):  # no subscribe(): the session has it
        await got.wait_for(20)
    assert sorted(int(p) for p in got.payloads) == list(range(20))


async def test_resubscribes_when_the_broker_lost_the_session(mosquitto: Mosquitto) -> None:
    got = Collector()
    async with client(config(mosquitto), on_message=got) as gw:
        await gw.subscribe("lost/topic")
        mosquitto.stop()
        (mosquitto.dir / "mosquitto.db").unlink()  # the broker forgets every session
        await until(lambda: not gw.connected)
        mosquitto.start()
        assert await gw.wait_connected(5)
        async with publisher(mosquitto) as pub:
            # The re-sent SUBSCRIBE may still be in flight: publish until one arrives.
            async with asyncio.timeout(5):
                while not got.messages:
                    await pub.publish("lost/topic", b"back")
                    await asyncio.sleep(0.05)
    assert got.payloads[0] == b"back"


async def test_broker_down_at_start_connects_when_it_comes_up(mosquitto: Mosquitto) -> None:
    mosquitto.stop()
    got = Collector()
    async with client(config(mosquitto), on_message=got) as gw:
        assert not gw.connected
        await gw.subscribe("late/topic")  # recorded, sent on CONNACK
        with pytest.raises(MqttUnavailable):
            await gw.publish("late/topic", b"x")
        mosquitto.start()
        assert await gw.wait_connected(5)
        await until(lambda: gw.window > 1)
        async with publisher(mosquitto) as pub:
            async with asyncio.timeout(5):
                while not got.messages:
                    await pub.publish("late/topic", b"hello")
                    await asyncio.sleep(0.05)


async def test_shared_group_subscription(mosquitto: Mosquitto) -> None:
    first, second = Collector(), Collector()
    async with (
        client(config(mosquitto, shared_group="gw"), on_message=first) as a,
        client(config(mosquitto, shared_group="gw"), on_message=second) as b,
        publisher(mosquitto) as pub,
    ):
        assert a.topic_filter("sms/submit") == "$share/gw/sms/submit"
        await a.subscribe("sms/submit")
        await b.subscribe("sms/submit")
        assert a.subscriptions == ["$share/gw/sms/submit"]
        for i in range(20):
            await pub.publish("sms/submit", b"%d" % i)
        await until(lambda: len(first.messages) + len(second.messages) >= 20)
        await asyncio.sleep(0.2)
    payloads = first.payloads + second.payloads
    assert sorted(int(p) for p in payloads) == list(range(20))  # each job to one gateway
    assert first.messages and second.messages
    assert all(m.topic == "sms/submit" for m in first.messages + second.messages)


async def test_close_lets_running_handlers_acknowledge(mosquitto: Mosquitto) -> None:
    """Leaving the context waits (bounded) for handlers so their jobs are not redelivered."""
    handled: list[bytes] = []

    async def handler(message: Message) -> None:
        await asyncio.sleep(0.2)
        handled.append(message.payload)

    cfg = config(mosquitto)
    async with client(cfg, on_message=handler) as gw, publisher(mosquitto) as pub:
        await gw.subscribe("drain/topic")
        await pub.publish("drain/topic", b"j")
        await until(lambda: gw.handling == 1)
    assert handled == [b"j"]
    again = Collector()
    async with client(cfg, on_message=again):
        await asyncio.sleep(0.4)
    assert again.messages == []


def test_secret_never_in_repr(mosquitto: Mosquitto) -> None:
    from smppgw.config import Secret

    cfg = config(mosquitto, username="u", password=Secret("hunter2"))
    mqtt = MqttClient(cfg)
    assert "hunter2" not in repr(mqtt) and "hunter2" not in repr(cfg)


async def test_handler_finishing_after_a_reconnect_does_not_acknowledge(
    mosquitto: Mosquitto,
) -> None:
    """A PUBACK from a handler of a lost connection would land on the new one, where the
    broker has resent the message under the same packet id (and may reuse that id): it
    must be withheld, leaving the redelivered copy unacknowledged until its own handler
    returns."""
    gates = [asyncio.Event(), asyncio.Event()]
    deliveries: list[bytes] = []

    async def blocked(message: Message) -> None:
        index = len(deliveries)
        deliveries.append(message.payload)
        if index < len(gates):
            await gates[index].wait()

    cfg = config(mosquitto)
    async with client(cfg, on_message=blocked, drain_timeout=0) as gw:
        await gw.subscribe("stale/topic")
        async with publisher(mosquitto) as pub:
            await pub.publish("stale/topic", b"job")
        await until(lambda: len(deliveries) == 1)
        mosquitto.stop()
        mosquitto.start()
        await until(lambda: len(deliveries) == 2)  # redelivered on the new connection
        gates[0].set()  # the first handler now finishes: stale, no PUBACK
        await asyncio.sleep(0.3)
    # The second handler never finished, so the broker still holds the message.
    got = Collector()
    async with client(cfg, on_message=got):
        await got.wait_for(1)
    assert got.payloads == [b"job"]


async def test_packet_ids_of_publishes_lost_with_the_session_are_reused(
    make_mosquitto: Callable[..., Mosquitto],
) -> None:
    broker = make_mosquitto(max_inflight_messages=20)
    async with client(config(broker)) as gw:
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        stuck = [asyncio.create_task(gw.publish("ids/topic", b"x")) for _ in range(gw.window)]
        await until(lambda: gw.inflight == gw.window)
        broker.kill()
        await asyncio.gather(*stuck, return_exceptions=True)
        (broker.dir / "mosquitto.db").unlink(missing_ok=True)
        broker.start()  # no session: gmqtt drops its in-flight packets
        assert await gw.wait_connected(5)
        await until(lambda: gw.inflight == 0)
        await asyncio.gather(*(gw.publish("ids/topic", b"%d" % i) for i in range(200)))


async def test_publish_timeout_while_waiting_for_a_slot_leaks_nothing(
    make_mosquitto: Callable[..., Mosquitto],
) -> None:
    broker = make_mosquitto(max_inflight_messages=20)
    async with publisher(broker) as pub:
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            stuck = [asyncio.create_task(pub.publish("slot/t", b"x")) for _ in range(pub.window)]
            await until(lambda: pub.inflight == pub.window)
            late = [pub.publish("slot/t", b"late", timeout=0.2) for _ in range(5)]
            results = await asyncio.gather(*late, return_exceptions=True)
            assert all(isinstance(r, MqttUnavailable) for r in results)
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        await asyncio.wait_for(asyncio.gather(*stuck), 5)
        peak = 0

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, pub.inflight)
                await asyncio.sleep(0)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(pub.publish("slot/t", b"%d" % i) for i in range(300)))
        sampler.cancel()
        assert peak == pub.window  # the whole window is usable again
        assert pub.inflight == 0


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("tls")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        proc = subprocess.run(["openssl", *args], cwd=d, capture_output=True, timeout=30)
        assert proc.returncode == 0, proc.stderr.decode()

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=smppgw test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")  # fmt: skip
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return {name: d / name for name in ("ca.crt", "server.crt", "server.key")}


async def test_tls_verifies_the_broker_certificate(
    make_mosquitto: Callable[..., Mosquitto], tls_files: dict[str, Path]
) -> None:
    from smppgw.config import TlsConfig
    from smppgw.mqtt import MqttError

    broker = make_mosquitto(
        extra_config=f"certfile {tls_files['server.crt']}\nkeyfile {tls_files['server.key']}"
    )
    got = Collector()
    trusted = TlsConfig(ca_file=str(tls_files["ca.crt"]))
    async with client(config(broker, tls=trusted), on_message=got) as gw:
        assert gw.connected
        await gw.subscribe("tls/topic")
        await gw.publish("tls/topic", b"over tls")
        await got.wait_for(1)
    # Verification is on by default: a certificate from an unknown CA is refused ...
    with pytest.raises(MqttError, match="not trusted"):
        async with client(config(broker, tls=TlsConfig())):
            pass
    # ... unless explicitly turned off.
    async with client(config(broker, tls=TlsConfig(verify=False))) as gw:
        assert gw.connected
