"""The control socket ``smppgw ctl`` talks to: a UNIX stream socket, one JSON request per
line, one JSON response per line.

Who may ask is decided twice. The socket file is owner-only (0600) unless ``ctl.allow_uids``
names others, and on every connection the kernel's word on the peer (``SO_PEERCRED``) is
checked: root, the gateway's own uid and ``ctl.allow_uids`` are served, anyone else gets
one refusal line and the connection is closed. The file mode alone would not do: a socket
made 0666 for an allowed uid lets everybody connect.

This module is only the transport (framing, peer check, limits); what a request does is
the ``handle`` callable's business (:mod:`smppgw.ops.control`). A request is::

    {"command": "jobs.cancel", "args": {"id": "abc"}}

and the answer ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from smppgw.ops.logs import get_logger
from smppgw.ops.metrics import Metrics

log = get_logger("smppgw.ctl")

#: Longest request line, in octets; a longer one is refused and the connection closed.
MAX_REQUEST = 64 * 1024
#: Connections served at once; more wait in the listen backlog.
MAX_CLIENTS = 8
#: Seconds a connection may stay idle between requests.
IDLE_TIMEOUT = 30.0
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class RequestError(Exception):
    """A request this gateway cannot do, in words for the operator (sent back as
    ``error``); ``invalid`` when the request itself is malformed or unknown."""

    def __init__(self, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.invalid = invalid


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    args: dict[str, Any]
    #: The peer's uid as the kernel reported it at connect time.
    uid: int


Handler = Callable[[Request], Awaitable[object]]


def peer_uid(sock: socket.socket) -> int:
    """The connecting process's uid (``SO_PEERCRED``: fixed at connect, not spoofable)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(raw)[1])


def parse_request(line: bytes, uid: int) -> Request:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"not a JSON request: {exc}", invalid=True) from None
    if not isinstance(data, dict) or not isinstance(data.get("command"), str):
        raise RequestError('a request is {"command": "...", "args": {...}}', invalid=True)
    args = data.get("args", {})
    if not isinstance(args, dict):
        raise RequestError("args must be an object", invalid=True)
    return Request(data["command"], args, uid)


class CtlServer:
    """Serves ``handle`` on a UNIX socket at ``path`` while entered (``async with``)."""

    def __init__(
        self,
        path: str,
        handle: Handler,
        metrics: Metrics,
        *,
        allow_uids: Callable[[], Iterable[int]] = tuple,
    ) -> None:
        self.path = path
        self._handle = handle
        self._metrics = metrics
        self._allow_uids = allow_uids
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._slots = asyncio.Semaphore(MAX_CLIENTS)
        self._clients: set[asyncio.Task[Any]] = set()

    def allowed(self, uid: int) -> bool:
        return uid in (0, os.geteuid()) or uid in set(self._allow_uids())

    async def __aenter__(self) -> CtlServer:
        """Listen, or log why not: the gateway sends SMS without its control socket."""
        try:
            self._take_over_stale()
            self._server = await asyncio.start_unix_server(
                self._client, self.path, limit=MAX_REQUEST
            )
            mode = 0o666 if tuple(self._allow_uids()) else 0o600
            os.chmod(self.path, mode)
            self._inode = os.stat(self.path).st_ino
        except OSError as exc:
            if self._server is not None:
                self._server.close()
                self._server = None
            log.warning("ctl_unavailable", socket=self.path, error=str(exc))
            return self
        log.info("ctl_listening", socket=self.path, mode=oct(mode))
        return self

    def _take_over_stale(self) -> None:
        """A socket file nobody listens on (a crash) is removed; one in use is not."""
        try:
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise OSError(f"{self.path} exists and is not a socket")
        except FileNotFoundError:
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except ConnectionRefusedError:
            os.unlink(self.path)
            return
        except OSError:
            return  # not ours to judge: bind reports it
        finally:
            probe.close()
        raise OSError(f"{self.path}: another process is listening on it")

    async def __aexit__(self, *exc_info: object) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            async with self._slots:
                await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = peer_uid(writer.get_extra_info("socket"))
        if not self.allowed(uid):
            self._metrics.ctl_requests.labels(result="refused").inc()
            log.warning("ctl_refused", uid=uid, reason="uid not allowed")
            await _send(writer, {"ok": False, "error": f"uid {uid} is not allowed (ctl)"})
            return
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
            except ValueError:  # over MAX_REQUEST: the stream is out of step, close it
                self._metrics.ctl_requests.labels(result="invalid").inc()
                await _send(writer, {"ok": False, "error": f"request over {MAX_REQUEST} octets"})
                return
            if not line:
                return
            await _send(writer, await self._answer(line, uid))

    async def _answer(self, line: bytes, uid: int) -> dict[str, Any]:
        try:
            request = parse_request(line, uid)
            result = await self._handle(request)
        except RequestError as exc:
            outcome = "invalid" if exc.invalid else "failed"
            self._metrics.ctl_requests.labels(result=outcome).inc()
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("ctl_failed", uid=uid)
            self._metrics.ctl_requests.labels(result="failed").inc()
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        self._metrics.ctl_requests.labels(result="ok").inc()
        return {"ok": True, "result": result}


async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    writer.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
    await writer.drain()
