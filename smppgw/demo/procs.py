"""The demo's child processes (simulator, gateway) and the little HTTP it speaks to them.

Children (:class:`smppgw.procs.Child`) run in their own session so that Ctrl-C in the
terminal reaches only the demo, which then stops them in order: the gateway first
(SIGTERM, so it drains and unbinds), the simulator next.

HTTP calls use urllib in a worker thread: a handful of requests to loopback ports does not
justify a client library, and the thread keeps the event loop (and the MQTT client in it)
running while a request waits.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from smppgw.procs import Child


def smppgw_child(name: str, args: list[str], log_path: Path) -> Child:
    """``python -m smppgw <args>``, started, in its own session."""
    argv = [sys.executable, "-m", "smppgw", *args]
    return Child(name, argv, log_path, own_session=True).start()


def _request(method: str, url: str, body: Any, timeout: float) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return status, raw.decode("utf-8", errors="replace")


async def http_json(
    method: str, url: str, body: Any = None, timeout: float = 5.0
) -> tuple[int, Any]:
    """(status, decoded JSON body or text); raises OSError when nothing answers."""
    return await asyncio.to_thread(_request, method, url, body, timeout)


async def http_text(url: str, timeout: float = 5.0) -> str:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body.decode("utf-8", errors="replace")

    return await asyncio.to_thread(get)
