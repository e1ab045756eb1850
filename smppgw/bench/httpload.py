"""The HTTP side of the Kannel comparison: an injector for smsbox's ``sendsms`` and a
sink for the delivery reports smsbox sends to each message's ``dlr-url``.

Kannel's users inject over HTTP and take receipts over HTTP, so that is how Kannel is
measured. Both parts run in their own spawned processes (like the MQTT publisher and
collector of :mod:`smppgw.bench.load`), so their CPU time is their own, read from
``/proc`` and reported beside Kannel's rather than hidden in it. Both are raw HTTP/1.1
over asyncio on loopback with keep-alive: a few microseconds per request, far below
what Kannel spends per message, so neither is the bottleneck being measured.

A DLR URL is ``http://127.0.0.1:PORT/d?i=<job number>&t=%d``; smsbox replaces ``%d``
with the report's type (8: SMSC accepted the submit; 1: delivered; 2: failed; 16:
SMSC rejected; 4: buffered).
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import multiprocessing.connection
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from typing import Any, cast
from urllib.parse import quote

from smppgw.bench.load import TEXT, _Worker, commands, destination, pace, spawned

__all__ = [
    "DLR_ACK",
    "DLR_DELIVERED",
    "DlrResult",
    "DlrSink",
    "Injected",
    "Injector",
    "SendSms",
]

#: Kannel's DLR types (``dlr-mask`` bits): 1 delivered, 2 failed, 4 buffered, 8 SMSC
#: accepted the submit, 16 SMSC rejected it.
DLR_DELIVERED = 1
DLR_ACK = 8
#: Delivered + failed + SMSC ack: the submit and the final state, as smppgw's two events.
DLR_MASK = DLR_DELIVERED | 2 | DLR_ACK
_FINAL_TYPES = frozenset({1, 2, 16})
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
#: sendsms requests in flight (one per keep-alive connection). smsbox does best with a few
#: dozen: at 100 its bearerbox spends twice the CPU per message and falls behind.
CONCURRENCY = 20


@dataclass
class DlrResult:
    """Per job number: when its SMSC-ack report and its final report arrived."""

    acked: dict[int, float] = field(default_factory=dict)
    final: dict[int, tuple[int, float]] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    malformed: int = 0


# ====================================================================== DLR sink


class _SinkProtocol(asyncio.Protocol):
    """One keep-alive connection from smsbox: GET requests without bodies, each answered
    200 with an empty body. Parsing is the request line only."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        replies = 0
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            self.sink.record(buffer[: buffer.find(b"\r\n")])
            buffer = buffer[end + 4 :]
            replies += 1
        self.buffer = buffer
        if replies and self.transport is not None:
            self.transport.write(_OK * replies)


class _Sink:
    def __init__(self, counters: tuple[Any, Any, Any]) -> None:
        self.acks, self.finals, self.last_final = counters
        self.result = DlrResult()

    def record(self, request_line: bytes) -> None:
        """``GET /d?i=123&t=8 HTTP/1.1`` → one report of job 123."""
        now = time.monotonic()
        result = self.result
        try:
            query = request_line.split(b" ", 2)[1].split(b"?", 1)[1]
            params = dict(p.split(b"=", 1) for p in query.split(b"&"))
            index, kind = int(params[b"i"]), int(params[b"t"])
        except (IndexError, KeyError, ValueError):
            result.malformed += 1
            return
        result.counts[kind] = result.counts.get(kind, 0) + 1
        if kind == DLR_ACK:
            result.acked[index] = now
            self.acks.value += 1
        elif kind in _FINAL_TYPES:
            result.final[index] = (kind, now)
            self.finals.value += 1
            self.last_final.value = now


async def _sink(
    host: str, port: int, conn: multiprocessing.connection.Connection, counters: Any
) -> None:
    loop = asyncio.get_running_loop()
    sink = _Sink(counters)
    server = await loop.create_server(lambda: _SinkProtocol(sink), host, port, backlog=512)
    conn.send(("ready",))
    try:
        async for command in commands(conn):
            kind = command[0]
            if kind == "result":
                conn.send(("done", sink.result))
            elif kind == "reset":
                sink.result = DlrResult()
                sink.acks.value = sink.finals.value = 0
                conn.send(("done",))
    finally:
        server.close()
    conn.send(("stopped",))


class DlrSink(_Worker):
    """Counts the delivery reports smsbox sends to ``dlr_url(i)``."""

    def __init__(self, host: str, port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.host, self.port = host, port
        self.acks: Synchronized[int] = cast(Any, ctx.RawValue("q", 0))
        self.finals: Synchronized[int] = cast(Any, ctx.RawValue("q", 0))
        self.last_final: Synchronized[float] = cast(Any, ctx.RawValue("d", 0.0))
        counters = (self.acks, self.finals, self.last_final)
        super().__init__(functools.partial(spawned, _sink), host, port, counters, "dlr sink")
        self.wait_ready()

    def dlr_url(self) -> str:
        """The ``dlr-url`` of every message, before its job number is appended."""
        return f"http://{self.host}:{self.port}/d?t=%d&i="

    def result(self) -> DlrResult:
        result: DlrResult = self.call("result", timeout=60.0)[1]
        return result

    def reset(self) -> None:
        self.call("reset", timeout=10.0)


# ====================================================================== injector


@dataclass(frozen=True, slots=True)
class SendSms:
    """What every sendsms request carries besides the job's number."""

    username: str
    password: str
    sender: str
    dlr_url: str
    dlr_mask: int = DLR_MASK
    text: str = TEXT

    def request(self, host: str, port: int, index: int) -> bytes:
        query = (
            f"username={quote(self.username)}&password={quote(self.password)}"
            f"&from={quote(self.sender)}&to={destination(index)}&text={quote(self.text)}"
            f"&dlr-mask={self.dlr_mask}&dlr-url={quote(self.dlr_url + str(index), safe='')}"
        )
        return (f"GET /cgi-bin/sendsms?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").encode(
            "ascii"
        )


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return status, body


#: Attempts per job when smsbox closes or resets a connection before replying.
_ATTEMPTS = 5


@dataclass
class Injected:
    """What a burst did: each job's (last) send time, the replies that were not
    ``202 Accepted`` (10 at most) and how many requests were sent again on a new
    connection because smsbox dropped the old one before answering."""

    times: list[float]
    errors: list[str] = field(default_factory=list)
    resent: int = 0


async def _inject(
    host: str,
    port: int,
    sendsms: SendSms,
    first: int,
    count: int,
    concurrency: int,
    sent: Any,
    rate: float | None = None,
) -> Injected:
    """``count`` sendsms requests over ``concurrency`` keep-alive connections: flat out,
    or released at ``rate`` a second by :func:`~smppgw.bench.load.pace` (the MQTT
    publisher's clock). A paced job's time is when it fell due, so a wait for a free
    connection (smsbox slow to answer) counts against Kannel, as a publish's wait for
    its PUBACK counts against smppgw."""
    out = Injected([0.0] * count)
    times, errors = out.times, out.errors
    clock = time.monotonic
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    connections = max(1, min(concurrency, count))

    async def connection() -> None:
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while (k := await queue.get()) is not None:
                request = sendsms.request(host, port, first + k)
                for attempt in range(_ATTEMPTS):
                    try:
                        if streams is None:
                            streams = await asyncio.open_connection(host, port)
                        reader, writer = streams
                        if rate is None:
                            times[k] = clock()
                        writer.write(request)
                        status, body = await _read_reply(reader)
                        break
                    except (ConnectionError, asyncio.IncompleteReadError):
                        if streams is not None:
                            streams[1].close()
                            streams = None
                        if attempt == _ATTEMPTS - 1:
                            raise
                        out.resent += 1
                        await asyncio.sleep(0.01 * (attempt + 1))
                if status != 202 and len(errors) < 10:
                    errors.append(f"job {first + k}: HTTP {status} {body[:80]!r}")
                sent.value += 1
        finally:
            if streams is not None:
                streams[1].close()

    def due(k: int) -> None:
        times[k] = clock()
        queue.put_nowait(k)

    workers = asyncio.gather(*(connection() for _ in range(connections)))
    if rate is None:
        for k in range(count):
            queue.put_nowait(k)
    else:
        await pace(count, rate, due)
    for _ in range(connections):
        queue.put_nowait(None)
    await workers
    return out


async def _injector(
    host: str, port: int, conn: multiprocessing.connection.Connection, shared: Any
) -> None:
    sent, sendsms = shared
    conn.send(("ready",))
    async for command in commands(conn):
        _, first, count, concurrency, rate = command
        try:
            injected = await _inject(host, port, sendsms, first, count, concurrency, sent, rate)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            conn.send(("error", f"sendsms at {host}:{port}: {exc!r}"))
            continue
        conn.send(("done", injected))
    conn.send(("stopped",))


class Injector(_Worker):
    """Sends jobs to smsbox's ``/cgi-bin/sendsms`` over keep-alive connections, flat out
    or paced."""

    def __init__(self, host: str, port: int, sendsms: SendSms) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.sent: Synchronized[int] = cast(Any, ctx.RawValue("q", 0))
        shared = (self.sent, sendsms)
        super().__init__(
            functools.partial(spawned, _injector), host, port, shared, "sendsms injector"
        )
        self.wait_ready()

    def burst(
        self,
        first: int,
        count: int,
        *,
        concurrency: int = CONCURRENCY,
        tick: Any = None,
        timeout: float = 3600.0,
    ) -> Injected:
        """Jobs ``first .. first+count-1``, flat out."""
        reply = self.call("burst", first, count, concurrency, None, timeout=timeout, tick=tick)
        injected: Injected = reply[1]
        return injected

    def paced(
        self,
        first: int,
        count: int,
        rate: float,
        *,
        concurrency: int = CONCURRENCY,
        tick: Any = None,
    ) -> Injected:
        """Jobs ``first .. first+count-1`` at ``rate`` a second; each job's due time."""
        timeout = count / rate + 120.0
        reply = self.call("paced", first, count, concurrency, rate, timeout=timeout, tick=tick)
        injected: Injected = reply[1]
        return injected
