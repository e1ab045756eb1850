"""Child processes (simulator, gateway) and the little HTTP the demo speaks to them.

Children run in their own session so that Ctrl-C in the terminal reaches only the demo,
which then stops them in order: the gateway first (SIGTERM, so it drains and unbinds), the
simulator next. Should the demo die without cleaning up, an ``atexit`` hook still
terminates whatever is left, so a failed run leaves no daemon behind.

HTTP calls use urllib in a worker thread: a handful of requests to loopback ports does not
justify a client library, and the thread keeps the event loop (and the MQTT client in it)
running while a request waits.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _terminate_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if proc.poll() is None:
            proc.kill()


class ChildError(RuntimeError):
    """A child process failed to start or died; the message has the end of its log."""


class Child:
    """``python -m smppgw <args>`` with its output in ``log_path``."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name = name
        self.args = [sys.executable, "-m", "smppgw", *args]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(self.proc)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exited(self) -> int | None:
        """Exit code when the process has ended, else None."""
        return self.proc.poll() if self.proc is not None else None

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(text[-lines:])
        return ""

    def check_alive(self) -> None:
        code = self.exited()
        if code is not None:
            raise ChildError(f"{self.name} exited with code {code}:\n{self.log_tail()}")

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5.0)
        _LIVE.discard(proc)
        return proc.returncode


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
