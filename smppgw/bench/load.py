"""The load processes: a publisher of jobs and a collector of status events.

Both run in their own OS processes (``multiprocessing`` with *spawn*, so each has a clean
interpreter and its own event loop) and take commands from the orchestrator over a pipe:
the orchestrator stays a plain synchronous program that can watch ``/proc`` and print
progress while the load runs. Progress counters are shared memory, read without locks
(an int64 read is atomic; a figure one message stale is fine for a progress line).

Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for every process on the
machine, so a publish time taken here, a submit's arrival time in the simulator and an
event's arrival time in the collector can be subtracted directly, and no NTP step during a
run can bend them.

Job ``j<N>`` goes to ``849<N:08d>``: the destination carries the job's number, so the
simulator's record of a submit_sm says which job it was without parsing the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from typing import Any, cast

import orjson

__all__ = [
    "DEST_PREFIX",
    "TEXT",
    "Collector",
    "CollectorResult",
    "Publisher",
    "destination",
    "index_of_destination",
    "job_payload",
    "pace",
]

#: Routing prefix of the benchmark's destinations (a carrier is configured with it).
DEST_PREFIX = "849"
#: A typical single-part GSM order notification.
TEXT = "ShopVN: don hang #1984 da duoc giao thanh cong. Cam on ban da mua sam!"


def destination(index: int) -> str:
    return f"{DEST_PREFIX}{index:08d}"


def index_of_destination(number: str) -> int | None:
    if number.startswith(DEST_PREFIX) and number[3:].isdigit():
        return int(number[3:])
    return None


def job_payload(index: int, priority: str = "normal") -> bytes:
    return orjson.dumps(
        {"id": f"j{index}", "to": destination(index), "text": TEXT, "priority": priority}
    )


def _run(main: Callable[[], Any]) -> None:
    import logging

    import structlog

    # The MQTT client logs its connects at info; a load process keeps the terminal for
    # the progress line.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        asyncio.run(main())
    else:
        uvloop.run(main())


def spawned(
    main: Callable[[str, int, multiprocessing.connection.Connection, Any], Awaitable[None]],
    host: str,
    port: int,
    conn: multiprocessing.connection.Connection,
    shared: Any,
) -> None:
    """A load process's target: ``main(host, port, conn, shared)`` on a fresh event loop
    (``functools.partial(spawned, main)`` pickles by name, as *spawn* needs)."""
    _run(lambda: main(host, port, conn, shared))


async def commands(
    conn: multiprocessing.connection.Connection,
) -> AsyncIterator[tuple[Any, ...]]:
    """The orchestrator's commands, until ``stop``; the caller answers that with
    ``("stopped",)`` once it has cleaned up."""
    loop = asyncio.get_running_loop()
    while True:
        command: tuple[Any, ...] = await loop.run_in_executor(None, conn.recv)
        if command[0] == "stop":
            return
        yield command


# ====================================================================== publisher


async def _publisher(
    host: str, port: int, conn: multiprocessing.connection.Connection, published: Any
) -> None:
    from smppgw.config import MqttConfig
    from smppgw.mqtt import MqttClient

    client = MqttClient(MqttConfig(host=host, port=port, client_id="bench-load", keepalive=60))
    async with client:
        if not await client.wait_connected(10):
            conn.send(("error", "publisher: broker not reachable"))
            return
        conn.send(("ready",))
        async for command in commands(conn):
            kind = command[0]
            if kind == "burst":
                _, first, count, priority, concurrency = command
                started = time.monotonic()
                await _burst(client, first, count, priority, concurrency, published)
                conn.send(("done", started, time.monotonic()))
            elif kind == "paced":
                _, first, count, rate, priority = command
                times = await _paced(client, first, count, rate, priority, published)
                conn.send(("done", times))
            elif kind == "one":
                _, index, priority = command
                payload = job_payload(index, priority)
                at = time.monotonic()
                await client.publish("sms/submit", payload)
                published.value += 1
                conn.send(("done", at))
            else:  # pragma: no cover - orchestrator bug
                conn.send(("error", f"unknown command {kind!r}"))
        conn.send(("stopped",))


async def _burst(
    client: Any, first: int, count: int, priority: str, concurrency: int, published: Any
) -> None:
    """Publish ``count`` jobs as fast as the broker acknowledges them."""
    it = iter(range(first, first + count))
    publish = client.publish

    async def worker() -> None:
        for index in it:
            await publish("sms/submit", job_payload(index, priority))
            published.value += 1

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))


async def pace(count: int, rate: float, due: Callable[[int], None]) -> None:
    """Call ``due(0)`` .. ``due(count - 1)`` at ``rate`` a second, spread evenly (a timer
    tick every millisecond releases what is due). Bounded: it returns after ``count``
    calls. Shared by the MQTT publisher and Kannel's HTTP injector so both sides of a
    half-load comparison are fed by the same clock."""
    start = time.monotonic()
    i = 0
    clock = time.monotonic
    while i < count:
        until = min(count, int((clock() - start) * rate) + 1)
        while i < until:
            due(i)
            i += 1
        await asyncio.sleep(0.001)


async def _paced(
    client: Any, first: int, count: int, rate: float, priority: str, published: Any
) -> list[float]:
    """Publish at ``rate`` jobs a second (:func:`pace`); returns each job's publish time."""
    times = [0.0] * count
    pending: set[asyncio.Task[None]] = set()
    publish = client.publish
    errors = 0
    clock = time.monotonic

    async def one(payload: bytes) -> None:
        nonlocal errors
        try:
            await publish("sms/submit", payload)
        except Exception:
            errors += 1
        published.value += 1

    def due(i: int) -> None:
        payload = job_payload(first + i, priority)
        times[i] = clock()
        task = asyncio.ensure_future(one(payload))
        pending.add(task)
        task.add_done_callback(pending.discard)

    await pace(count, rate, due)
    if pending:
        await asyncio.gather(*pending)
    if errors:
        raise RuntimeError(f"{errors} publishes failed")
    return times


# ====================================================================== collector


@dataclass
class CollectorResult:
    """Per job number: when its ``submitted`` and final events arrived; counts by status."""

    submitted: dict[int, float] = field(default_factory=dict)
    final: dict[int, tuple[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


async def _collector(
    host: str,
    port: int,
    conn: multiprocessing.connection.Connection,
    counters: tuple[Any, Any, Any],
) -> None:
    # Plain gmqtt with a synchronous handler and optimistic PUBACKs: the cheapest way to
    # take ~10k events a second, so the collector steals as little CPU as possible from
    # the gateway it measures.
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv50

    submitted_count, final_count, last_final = counters
    result = CollectorResult()
    submitted = result.submitted
    final = result.final
    counts = result.counts
    probes: set[str] = set()
    clock = time.monotonic
    prefix = "sms/status/"
    cut = len(prefix)

    def on_message(_client: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        now = clock()
        job_id = topic[cut:]
        try:
            status = orjson.loads(payload)["status"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return 0
        counts[status] = counts.get(status, 0) + 1
        if job_id.startswith("j"):
            index = int(job_id[1:])
            if status == "submitted":
                submitted[index] = now
                submitted_count.value += 1
            else:
                final[index] = (status, now)
                final_count.value += 1
                last_final.value = now
        else:
            probes.add(job_id)
        return 0

    subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_subscribe(*_args: Any) -> None:
        if not subscribed.done():
            subscribed.set_result(None)

    client = gmqtt.Client("bench-collector", clean_session=True)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    await client.connect(host, port, keepalive=60, version=MQTTv50)
    client.subscribe(prefix + "#", qos=1)
    await asyncio.wait_for(subscribed, 10)
    conn.send(("ready",))
    probe_no = 0
    try:
        async for command in commands(conn):
            kind = command[0]
            if kind == "probe":
                # An invalid job (no "to") comes back as a "rejected" event: proof that the
                # gateway is subscribed and its intake → store → outbox → MQTT path works.
                _, timeout = command
                probe_no += 1
                name = f"probe-{probe_no}"
                deadline = clock() + timeout
                ok = False
                while clock() < deadline:
                    client.publish("sms/submit", orjson.dumps({"id": name}), qos=1)
                    for _ in range(50):
                        if name in probes:
                            break
                        await asyncio.sleep(0.01)
                    if name in probes:
                        ok = True
                        break
                conn.send(("done", ok))
            elif kind == "result":
                conn.send(("done", result))
            elif kind == "reset":
                result = CollectorResult()
                submitted, final, counts = result.submitted, result.final, result.counts
                submitted_count.value = final_count.value = 0
                conn.send(("done",))
    finally:
        await client.disconnect()
    conn.send(("stopped",))


# ====================================================================== orchestrator side


class _Worker:
    """A spawned process driven over a pipe."""

    def __init__(
        self, target: Callable[..., None], host: str, port: int, shared: Any, name: str
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(host, port, child, shared), name=name)
        self.process.daemon = True
        self.process.start()
        child.close()
        self.name = name

    @property
    def pid(self) -> int:
        pid = self.process.pid
        assert pid is not None
        return pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        reply = self.recv(timeout)
        if reply[0] != "ready":
            raise RuntimeError(f"{self.name}: {reply}")

    def send(self, *command: Any) -> None:
        self._conn.send(command)

    def recv(self, timeout: float, tick: Callable[[], None] | None = None) -> tuple[Any, ...]:
        """The next reply; ``tick`` runs about twice a second while waiting (progress)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no reply within {timeout:.0f} s")
            if self._conn.poll(min(0.5, remaining)):
                reply = cast(tuple[Any, ...], self._conn.recv())
                if reply[0] == "error":
                    raise RuntimeError(f"{self.name}: {reply[1]}")
                return reply
            if not self.process.is_alive():
                raise RuntimeError(f"{self.name} exited with {self.process.exitcode}")
            if tick is not None:
                tick()

    def call(
        self, *command: Any, timeout: float = 600.0, tick: Callable[[], None] | None = None
    ) -> tuple[Any, ...]:
        self.send(*command)
        return self.recv(timeout, tick)

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, EOFError, TimeoutError, RuntimeError):
                self.call("stop", timeout=10.0)
            self.process.join(5.0)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5.0)
        self._conn.close()


class Publisher(_Worker):
    """Publishes benchmark jobs at QoS 1 (each publish awaits its PUBACK)."""

    def __init__(self, host: str, port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.published: Synchronized[int] = cast(Any, ctx.RawValue("q", 0))
        super().__init__(
            functools.partial(spawned, _publisher), host, port, self.published, "load publisher"
        )
        self.wait_ready()

    def burst(
        self,
        first: int,
        count: int,
        priority: str = "normal",
        *,
        concurrency: int = 1000,
        tick: Callable[[], None] | None = None,
        timeout: float = 3600.0,
    ) -> tuple[float, float]:
        """Publish jobs ``first .. first+count-1`` flat out; (start, end) times."""
        reply = self.call("burst", first, count, priority, concurrency, timeout=timeout, tick=tick)
        return reply[1], reply[2]

    def paced(
        self,
        first: int,
        count: int,
        rate: float,
        priority: str = "normal",
        *,
        tick: Callable[[], None] | None = None,
    ) -> list[float]:
        """Publish at ``rate`` a second; each job's publish time."""
        timeout = count / rate + 120.0
        reply = self.call("paced", first, count, rate, priority, timeout=timeout, tick=tick)
        times: list[float] = reply[1]
        return times

    def one(self, index: int, priority: str = "high") -> float:
        """Publish one job; the time just before it was written."""
        reply = self.call("one", index, priority, timeout=30.0)
        at: float = reply[1]
        return at


class Collector(_Worker):
    """Records every status event the gateway publishes, by job number."""

    def __init__(self, host: str, port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.submitted: Synchronized[int] = cast(Any, ctx.RawValue("q", 0))
        self.finals: Synchronized[int] = cast(Any, ctx.RawValue("q", 0))
        self.last_final: Synchronized[float] = cast(Any, ctx.RawValue("d", 0.0))
        counters = (self.submitted, self.finals, self.last_final)
        super().__init__(
            functools.partial(spawned, _collector), host, port, counters, "event collector"
        )
        self.wait_ready()

    def probe(self, timeout: float = 30.0) -> bool:
        """True once the gateway answered an invalid job with its ``rejected`` event."""
        ok: bool = self.call("probe", timeout, timeout=timeout + 10.0)[1]
        return ok

    def result(self) -> CollectorResult:
        result: CollectorResult = self.call("result", timeout=60.0)[1]
        return result

    def reset(self) -> None:
        self.call("reset", timeout=10.0)
