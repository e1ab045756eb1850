"""The simulator's HTTP control port: stats, received submits, MO injection, faults.

A deliberately tiny HTTP/1.1 server on asyncio streams (one request per connection,
``Connection: close``): it serves a handful of JSON endpoints to test scripts and ``curl``
on loopback, so it needs no web framework, and it runs in the simulator's own event loop
so handlers can touch the simulator without locks.

    GET  /stats                      counters (see Simulator.stats)
    GET  /submits?since=N&limit=M    accepted submits with index >= N
    GET  /config                     current faults
    POST /config  {"reject_fraction": 0.5, "reject_status": "ESME_RSYSERR", ...}
    POST /mo      {"system_id"?, "from", "to", "text", "coding"?}
    GET    /reject-dest              refused destination prefixes (also in /config, /stats)
    POST   /reject-dest  {"dest": "8496111", "status": "0x0B"}   refuse a prefix / number
    DELETE /reject-dest/8496111      accept it again
    GET  /healthz
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson

from smppgw.sim.config import SimConfigError, check_mix
from smppgw.smpp.text import TextError

if TYPE_CHECKING:
    from smppgw.sim.server import Simulator

MAX_BODY = 1024 * 1024
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found"}
_REASONS.update({405: "Method Not Allowed", 413: "Payload Too Large", 500: "Server Error"})


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlServer:
    """Serves the control endpoints of one :class:`Simulator`."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                method, target, body = await asyncio.wait_for(_read_request(reader), 10.0)
                status, payload = await self.route(method, target, body)
            except HttpError as exc:
                status, payload = exc.status, {"error": str(exc)}
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            data = orjson.dumps(payload)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("ascii")
            writer.write(head + data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def route(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        query = parse_qs(url.query)
        sim = self.sim
        if path == "/stats":
            _only(method, "GET")
            return 200, sim.stats()
        if path == "/healthz":
            _only(method, "GET")
            return 200, {"ok": True, "name": sim.name}
        if path == "/submits":
            _only(method, "GET")
            since = _int_param(query, "since", 0)
            limit = _int_param(query, "limit", 10_000)
            items = sim.submits_since(since, limit)
            next_index = items[-1].index + 1 if items else max(since, sim.submits_base)
            return 200, {
                "since": since,
                "next": next_index,
                "total": sim.submits_base + len(sim.submits),
                "submits": [s.as_json(sim.monotonic_wall_offset) for s in items],
            }
        if path == "/config":
            if method == "GET":
                return 200, self._config_view()
            _only(method, "POST")
            changes = _json_object(body)
            self._apply_config(changes)
            return 200, self._config_view()
        if path == "/reject-dest" or path.startswith("/reject-dest/"):
            return self._reject_dest(method, path, body)
        if path == "/mo":
            _only(method, "POST")
            request = _json_object(body)
            try:
                source = str(request["from"])
                destination = str(request["to"])
                text = str(request["text"])
            except KeyError as exc:
                raise HttpError(400, f"missing field {exc.args[0]!r}") from None
            system_id = request.get("system_id")
            if system_id is not None and system_id not in sim.accounts:
                raise HttpError(400, f"unknown system_id {system_id!r}")
            try:
                parts = await sim.send_mo(
                    system_id, source, destination, text, coding=request.get("coding", "auto")
                )
            except TextError as exc:
                raise HttpError(400, str(exc)) from None
            return 202, {"queued": True, "parts": parts}
        raise HttpError(404, f"no such endpoint {path}")

    def _config_view(self) -> dict[str, Any]:
        config = self.sim.config
        return {
            "faults": dataclasses.asdict(config.faults),
            "receipt_delay": config.receipt_delay,
            "receipt_mix": config.receipt_mix,
            "reject_dest": self.sim.rejects.as_json(),
        }

    def _reject_dest(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """GET / POST ``/reject-dest`` and DELETE ``/reject-dest/PREFIX``: the ported numbers."""
        rejects = self.sim.rejects
        prefix = path.removeprefix("/reject-dest").strip("/")
        if prefix:
            _only(method, "DELETE")
            if not rejects.remove(prefix):
                raise HttpError(404, f"reject_dest: {prefix!r} is not refused")
        elif method == "POST":
            request = _json_object(body)
            if set(request) != {"dest", "status"}:
                keys = sorted(request)
                raise HttpError(400, f'expected {{"dest": PREFIX, "status": STATUS}}, got {keys}')
            try:
                rejects.set(request["dest"], request["status"])
            except SimConfigError as exc:
                raise HttpError(400, str(exc)) from None
        else:
            _only(method, "GET")
        return 200, {"reject_dest": rejects.as_json()}

    def _apply_config(self, changes: dict[str, Any]) -> None:
        sim = self.sim
        receipt_delay = changes.pop("receipt_delay", None)
        receipt_mix = changes.pop("receipt_mix", None)
        try:
            if receipt_mix is not None:
                if not isinstance(receipt_mix, dict):
                    raise SimConfigError("receipt_mix: expected an object")
                mix = {str(k).upper(): v for k, v in receipt_mix.items()}
                check_mix(mix)
            if receipt_delay is not None and (
                isinstance(receipt_delay, bool)
                or not isinstance(receipt_delay, int | float)
                or receipt_delay < 0
            ):
                raise SimConfigError("receipt_delay: must be a number >= 0")
            sim.set_faults(**changes)
        except SimConfigError as exc:
            raise HttpError(400, str(exc)) from None
        if receipt_mix is not None:
            sim.config.receipt_mix = mix
            sim.receipts.set_mix(mix)
        if receipt_delay is not None:
            sim.config.receipt_delay = float(receipt_delay)


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise HttpError(405, f"use {allowed}")


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise HttpError(400, f"{name}: not an integer") from None
    if value < 0:
        raise HttpError(400, f"{name}: must be >= 0")
    return value


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HttpError(400, "body must be a JSON object")
    return value


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    line = await reader.readline()
    if not line:
        raise asyncio.IncompleteReadError(b"", None)
    try:
        method, target, _version = line.decode("latin-1").split()
    except ValueError:
        raise HttpError(400, "bad request line") from None
    length = 0
    for _ in range(100):
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise HttpError(400, "bad Content-Length") from None
    else:
        raise HttpError(400, "too many headers")
    if length > MAX_BODY:
        raise HttpError(413, "body too large")
    body = await reader.readexactly(length) if length else b""
    return method.upper(), target, body
