"""The demo's MQTT side: publishes jobs, records every event, prints one line per event.

It is an ordinary client of the gateway, the way a shop's back end would be: it knows the
topics from the config and nothing else. Events of the bulk burst are not printed one by
one (two hundred lines would bury the interesting ones); the runner prints a progress
line for them instead, and only a burst job that fails gets a line of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from smppgw.config import MqttConfig
from smppgw.mqtt import Message, MqttClient

FINAL = frozenset({"delivered", "undelivered", "expired", "rejected", "failed"})


@dataclass(slots=True)
class Seen:
    """An event as received: when (wall and monotonic) and its decoded payload."""

    wall: float
    mono: float
    topic: str
    body: dict[str, Any]


@dataclass(slots=True)
class Record:
    """Everything the watcher learned, for the progress lines and the summary."""

    statuses: dict[str, list[Seen]] = field(default_factory=dict)
    inbound: list[Seen] = field(default_factory=list)
    #: Replies to ``expect_reply`` jobs, on ``<reply_topic>/<job id>``.
    replies: list[Seen] = field(default_factory=list)
    rejected: list[Seen] = field(default_factory=list)
    consent: list[Seen] = field(default_factory=list)
    published: dict[str, float] = field(default_factory=dict)  # job id → wall time

    def final(self, job_id: str) -> Seen | None:
        for seen in self.statuses.get(job_id, ()):
            if seen.body.get("status") in FINAL:
                return seen
        return None

    def first(self, job_id: str, status: str) -> Seen | None:
        for seen in self.statuses.get(job_id, ()):
            if seen.body.get("status") == status:
                return seen
        return None


def clock(wall: float) -> str:
    """Local wall time with milliseconds: what an operator compares with log lines."""
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall * 1000) % 1000:03d}"


def status_line(seen: Seen) -> str:
    body = seen.body
    parts = int(body.get("parts") or 0)
    tail = ""
    error = body.get("error")
    if isinstance(error, dict):
        tail = f"{error.get('code')}: {error.get('reason')}"
    elif body.get("message_ids"):
        tail = "ids " + " ".join(str(m) for m in body["message_ids"])
    return (
        f"{clock(seen.wall)}  {body.get('id', '?')!s:<20} {body.get('status', '?')!s:<11} "
        f"{body.get('carrier') or '-'!s:<9} {parts} part{' ' if parts == 1 else 's'}  {tail}"
    ).rstrip()


def inbound_line(seen: Seen) -> str:
    body = seen.body
    return (
        f"{clock(seen.wall)}  MO on {seen.topic}: from {body.get('from')} to {body.get('to')}: "
        f"{body.get('text')!r}"
        + (f" (in reply to {body['in_reply_to']})" if body.get("in_reply_to") else "")
    )


def consent_line(seen: Seen) -> str:
    body = seen.body
    how = f"keyword {body.get('keyword')!r} via {body.get('carrier')}"
    if body.get("source") == "admin":
        how = "smppgw consent"
    change = f"{body.get('number')} {body.get('action')}"
    return f"{clock(seen.wall)}  consent on {seen.topic}: {change} ({how})"


class Watcher:
    """One MQTT connection: subscribe to the gateway's output topics, publish jobs."""

    def __init__(
        self,
        broker: tuple[str, int],
        mqtt: MqttConfig,
        out: TextIO,
        *,
        quiet: Callable[[str], bool] = lambda job_id: False,
    ) -> None:
        self.topics = mqtt
        self.out = out
        self.quiet = quiet
        self.record = Record()
        self.changed = asyncio.Event()
        host, port = broker
        self.client = MqttClient(
            # No lingering session on the user's broker once the demo is gone.
            MqttConfig(host=host, port=port, client_id=f"{mqtt.client_id}-watch", session_expiry=0),
            on_message=self._on_message,
        )

    async def __aenter__(self) -> Watcher:
        async with contextlib.AsyncExitStack() as connected:  # closed again if this fails
            await connected.enter_async_context(self.client)
            if not await self.client.wait_connected(10):
                raise ConnectionError("could not connect to the MQTT broker")
            status = self.topics.status_topic.rstrip("/")
            inbound = self.topics.inbound_topic.rstrip("/")
            await self.client.subscribe(f"{status}/#")
            await self.client.subscribe(f"{inbound}/#")
            await self.client.subscribe(f"{self.topics.reply_topic.rstrip('/')}/#")
            await self.client.subscribe(self.topics.rejected_topic)
            await self.client.subscribe(self.topics.consent_topic)
            self._connected = connected.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._connected.aclose()

    async def publish(self, job: dict[str, Any]) -> None:
        self.record.published[str(job["id"])] = time.time()
        await self.client.publish(self.topics.submit_topic, orjson.dumps(job), qos=1, timeout=10)

    def say(self, line: str) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            print(line, file=self.out, flush=True)

    async def _on_message(self, message: Message) -> None:
        seen_at, mono = time.time(), time.monotonic()
        try:
            body = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            self.say(f"{clock(seen_at)}  {message.topic}: {message.payload[:100]!r}")
            return
        seen = Seen(seen_at, mono, message.topic, body)
        status_prefix = self.topics.status_topic.rstrip("/") + "/"
        if message.topic.startswith(status_prefix):
            job_id = message.topic[len(status_prefix) :]
            self.record.statuses.setdefault(job_id, []).append(seen)
            if not self.quiet(job_id) or body.get("status") not in ("submitted", "delivered"):
                self.say(status_line(seen))
        elif message.topic.startswith(self.topics.inbound_topic.rstrip("/") + "/"):
            self.record.inbound.append(seen)
            self.say(inbound_line(seen))
        elif message.topic == self.topics.consent_topic:
            self.record.consent.append(seen)
            self.say(consent_line(seen))
        elif message.topic.startswith(self.topics.reply_topic.rstrip("/") + "/"):
            self.record.replies.append(seen)
            self.say(f"{clock(seen_at)}  reply on {message.topic}: {body.get('text')!r}")
        else:
            self.record.rejected.append(seen)
            self.say(f"{clock(seen_at)}  on {message.topic}: {body.get('reason')}")
        self.changed.set()

    async def wait_change(self, timeout: float) -> None:
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)


def count_finals(record: Record, ids: Collection[str]) -> dict[str, int]:
    """Final statuses of ``ids`` by name, plus ``submitted`` for those past submit_sm."""
    counts: dict[str, int] = {"submitted": 0}
    for job_id in ids:
        events = record.statuses.get(job_id, ())
        if any(e.body.get("status") == "submitted" for e in events):
            counts["submitted"] += 1
        final = record.final(job_id)
        if final is not None:
            name = str(final.body.get("status"))
            counts[name] = counts.get(name, 0) + 1
    return counts
