"""HTTP for operations: /metrics, /healthz and /readyz (:class:`HttpEndpoint`), on a server
whose cost is bounded whatever the clients do.

wsgiref's server with ``ThreadingMixIn`` starts a thread per connection and lets a client
that connects and says nothing hold it forever (measured: 500 idle connections, 503
threads, all still there 20 s later). Here:

* one thread accepts connections and reads their request heads (``selectors``, no
  blocking): a connection costs a socket, never a thread, while its request arrives;
* a request whose head is complete goes to a fixed pool of ``workers`` threads, which run
  wsgiref's handler on it (so the WSGI app sees what it always saw) and close it;
* at most ``max_connections`` are open at once. A new one beyond that takes the place of
  the oldest one still sending its request (idle or trickling), so a flood of idle
  connections cannot lock a scrape out; when every slot is being answered, the new
  connection is closed at once;
* every connection has ``timeout`` seconds from its accept to be answered: after that it
  is closed, idle, trickling or not reading its response;
* a request head over ``max_head`` octets is refused with 431 and closed.

Each connection dropped for these reasons is reported to ``on_drop(reason)`` (a metric).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import orjson
from prometheus_client import make_wsgi_app

from smppgw.config import parse_listen
from smppgw.ops.health import HealthState, Verdict
from smppgw.ops.logs import get_logger

if TYPE_CHECKING:  # metrics imports DROP_REASONS from here
    from smppgw.ops.metrics import Metrics

log = get_logger("smppgw.http")

#: ``on_drop`` reasons: a label set that stays small.
DROP_REASONS = ("over_cap", "timeout", "malformed")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one HTTP client, or many, may cost."""

    #: Connections open at once (sending a request, or being answered).
    max_connections: int = 64
    #: Threads answering requests.
    workers: int = 4
    #: Seconds from accept to the end of the response.
    timeout: float = 5.0
    #: Octets of request line and headers.
    max_head: int = 16 * 1024


DEFAULT_LIMITS = HttpLimits()


@dataclass(eq=False, slots=True)
class _Conn:
    sock: socket.socket
    address: Any
    deadline: float
    head: bytearray = field(default_factory=bytearray)
    #: Handed to a worker: its head is complete and it is being answered.
    busy: bool = False
    #: ``shutdown()`` already called on it because its deadline passed.
    cut: bool = False


_LISTEN = object()
_WAKE = object()


class BoundedWSGIServer(WSGIServer):
    """A ``WSGIServer`` (same ``set_app``, ``server_address``, ``shutdown``,
    ``server_close``) that serves with the bounds in :class:`HttpLimits`."""

    #: listen() backlog: socketserver's 5 makes a burst of connections wait a second for
    #: a SYN retry before this server even sees them.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[WSGIRequestHandler],
        *,
        limits: HttpLimits = DEFAULT_LIMITS,
        on_drop: Callable[[str], None] = lambda reason: None,
    ) -> None:
        # Everything server_close() closes exists before the base class binds: a bind that
        # fails (the port is in use) calls server_close() and must raise its OSError.
        self.limits = limits
        self._on_drop = on_drop
        self._lock = threading.Lock()
        #: Open connections in accept order (the first not busy is the one to evict).
        self._conns: dict[socket.socket, _Conn] = {}
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="smppgw-http")
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        super().__init__(address, handler)

    # ------------------------------------------------------------------ lifecycle

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Until :meth:`shutdown`; ``poll_interval`` caps how long a deadline can be late."""
        self._stopped.clear()
        sel = self._selector
        self.socket.setblocking(False)
        sel.register(self.socket, selectors.EVENT_READ, _LISTEN)
        sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        try:
            while not self._stopping.is_set():
                for key, _events in sel.select(self._next_wait(poll_interval)):
                    if key.data is _LISTEN:
                        self._accept()
                    elif key.data is _WAKE:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._read(key.data)
                self._reap()
        finally:
            with self._lock:
                conns = list(self._conns.values())
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
                if not conn.busy:
                    self._close(conn)
            sel.unregister(self.socket)
            sel.unregister(self._wake_r)
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait for it (not for workers: they end at their
        connection's deadline at the latest)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    # ------------------------------------------------------------------ serving thread

    def _next_wait(self, poll_interval: float) -> float:
        with self._lock:
            first = min((c.deadline for c in self._conns.values() if not c.cut), default=None)
        if first is None:
            return poll_interval
        return max(0.0, min(poll_interval, first - time.monotonic()))

    def _accept(self) -> None:
        for _ in range(self.limits.max_connections):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again at the next readiness
                log.warning("metrics http accept failed", error=str(exc))
                return
            sock.setblocking(False)
            if not self._make_room():
                self._drop(sock, "over_cap")
                continue
            conn = _Conn(sock, address, time.monotonic() + self.limits.timeout)
            with self._lock:
                self._conns[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _make_room(self) -> bool:
        """Room for one more connection, evicting the oldest one still sending its request."""
        with self._lock:
            if len(self._conns) < self.limits.max_connections:
                return True
            victim = next((c for c in self._conns.values() if not c.busy), None)
        if victim is None:
            return False
        self._on_drop("over_cap")
        self._close(victim)
        return True

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.head += data
        if b"\r\n\r\n" in conn.head or b"\n\n" in conn.head:
            self._selector.unregister(conn.sock)
            conn.busy = True
            self._pool.submit(self._answer, conn)
        elif len(conn.head) > self.limits.max_head:
            self._on_drop("malformed")
            with contextlib.suppress(OSError):
                conn.sock.send(b"HTTP/1.0 431 Request Header Fields Too Large\r\n\r\n")
            self._close(conn)

    def _reap(self) -> None:
        """Close what is past its deadline; a worker's socket is shut down under it."""
        now = time.monotonic()
        with self._lock:
            late = [c for c in self._conns.values() if c.deadline <= now and not c.cut]
        for conn in late:
            conn.cut = True
            self._on_drop("timeout")
            if conn.busy:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
            else:
                self._close(conn)

    def _close(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.pop(conn.sock, None)
        if not conn.busy:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        conn.sock.close()

    def _drop(self, sock: socket.socket, reason: str) -> None:
        self._on_drop(reason)
        sock.close()

    # ------------------------------------------------------------------ workers

    def _answer(self, conn: _Conn) -> None:
        try:
            remaining = conn.deadline - time.monotonic()
            if remaining > 0 and not conn.cut:
                conn.sock.settimeout(remaining)  # no single read or write waits longer
                self.finish_request(conn.sock, conn.address)
        except OSError:
            pass  # timed out or cut at its deadline (counted by _reap), or the peer left
        except Exception:
            log.exception("metrics http request failed")
        finally:
            with self._lock:
                self._conns.pop(conn.sock, None)
            self.shutdown_request(conn.sock)

    def head_of(self, sock: socket.socket) -> bytes:
        """The request head the serving thread read for ``sock`` (for the handler)."""
        with self._lock:
            conn = self._conns.get(sock)
        return bytes(conn.head) if conn is not None else b""


class PrereadHandler(WSGIRequestHandler):
    """wsgiref's handler, reading the request head the server already read, and quiet:
    scrapes and probes every few seconds would flood stderr."""

    server: BoundedWSGIServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's file object: it would keep the socket open
        self.rfile = io.BytesIO(self.server.head_of(self.request))

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpEndpoint:
    """/metrics, /healthz and /readyz, served by a :class:`BoundedWSGIServer` in threads of
    their own, so that a scrape never runs in (or waits for) the event loop; the probes
    read a :class:`~smppgw.ops.health.HealthState` that the loop keeps current."""

    def __init__(
        self, metrics: Metrics, health: HealthState, limits: HttpLimits = DEFAULT_LIMITS
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._limits = limits
        self._server: BoundedWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, listen: str) -> tuple[str, int]:
        """Start serving on ``listen`` (``host:port``, ``[::1]:9464`` for IPv6, port 0 for
        any free port). Returns the address actually bound, so tests and logs can name the
        real port."""
        if self._server is not None:
            raise RuntimeError("metrics server already running")
        host, port = parse_listen(listen)
        metrics = self._metrics
        metrics.heartbeat_age.set_function(self._health.heartbeat_age)
        app = _make_app(make_wsgi_app(metrics.registry), self._health)
        server_class: type[BoundedWSGIServer] = type(
            "_Server", (BoundedWSGIServer,), {"address_family": _family(host)}
        )
        dropped = {reason: metrics.http_dropped.labels(reason) for reason in DROP_REASONS}
        server = server_class(
            (host, port), PrereadHandler, limits=self._limits, on_drop=lambda r: dropped[r].inc()
        )
        server.set_app(app)
        thread = threading.Thread(
            target=server.serve_forever, name="smppgw-metrics", kwargs={"poll_interval": 0.2}
        )
        thread.daemon = True
        thread.start()
        self._server, self._thread = server, thread
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("metrics server not running")
        bound = self._server.server_address
        return str(bound[0]), int(bound[1])

    def stop(self) -> None:
        """Stop the HTTP server and wait for its thread; safe to call when not serving."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:  # a host name: let the resolver decide
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        return infos[0][0]


_Environ = dict[str, Any]
_StartResponse = Callable[..., Any]
_App = Callable[[_Environ, _StartResponse], Iterable[bytes]]


@dataclass(frozen=True, slots=True)
class _Probe:
    key: str
    check: Callable[[], Verdict]


def _make_app(metrics_app: _App, health: HealthState) -> _App:
    probes = {
        "/healthz": _Probe("alive", health.liveness),
        "/readyz": _Probe("ready", health.readiness),
    }

    def app(environ: _Environ, start_response: _StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        probe = probes.get(path)
        if probe is None:
            if path in ("/metrics", "/"):
                return metrics_app(environ, start_response)
            return _json(start_response, "404 Not Found", {"error": f"no such path: {path}"})
        verdict = probe.check()
        body: dict[str, object] = {probe.key: verdict.ok, "reasons": list(verdict.reasons)}
        body.update(verdict.details)
        status = "200 OK" if verdict.ok else "503 Service Unavailable"
        return _json(start_response, status, body)

    return app


def _json(start_response: _StartResponse, status: str, body: object) -> list[bytes]:
    data = orjson.dumps(body) + b"\n"
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [data]
