"""Outbox publisher: events committed to the store flow to the broker from here.

Every status event, receipt outcome and MO is first committed to the store's outbox in
the same transaction as the state change that caused it; this task publishes them at
QoS 1 and deletes each only after its PUBACK. So a broker that is away, or a crash between
commit and publish, delays events but never loses them (at-least-once: a crash after the
PUBACK and before the delete publishes that event again).

An event the broker will not take never blocks the others: it is *set aside* (moved to the
store's ``dead_events`` in one transaction, logged, counted) and the outbox moves on. Three
ways to find one:

* before publishing, an invalid topic name or a packet over the broker's Maximum Packet
  Size (:mod:`smppgw.mqtt.publishable`): the broker would close the connection for it;
* a PUBACK with a failure reason code (not authorized, quota exceeded, ...);
* a broker that closes the connection for a reason no check foresaw. After a round in
  which the connection dropped with events in flight, those events are published again in
  halves, then quarters, ..., until one event published *alone* is followed by the drop
  (:data:`POISON_STRIKES` times, each within :data:`POISON_WINDOW` s of sending it, and
  with other events getting through in between when there are others). An ordinary outage
  (broker restart) leaves halves that go through when it is back, so nothing is set aside
  for it; only the time to publish the round twice is lost.

The MQTT client must not replay in-flight publishes on reconnect (``replay_inflight=False``):
this task publishes again whatever failed, and a replay of the offending event would
disconnect the client again before the outbox could isolate it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import structlog

from smppgw.aio import wait_event
from smppgw.mqtt import MqttUnavailable, PublishLost, PublishRefused
from smppgw.mqtt.publishable import size_problem, topic_name_problem
from smppgw.store import OutboxEvent, StoreAPI, StoreError

log = structlog.get_logger("smppgw.outbox")

#: Events read from the store per round; published concurrently (the MQTT client keeps
#: them under the broker's Receive Maximum).
BATCH = 500

#: How many times an event published alone must be followed by the connection dropping
#: before it is taken for the cause: once could be an outage that happened to hit it.
POISON_STRIKES: Final = 2
#: Seconds after sending within which a drop counts against the event: a broker closes
#: the connection for a packet it cannot take at once (one round trip), an outage strikes
#: at any time.
POISON_WINDOW: Final = 2.0
#: What is stored as the reason of an event set aside for the drops.
DISCONNECT_REASON: Final = "broker closed the connection when it was published"
#: Characters of a topic that go into a log line (the rest could be anything).
_TOPIC_LOGGED: Final = 120


def _shown(topic: str) -> str:
    """A topic for a log line: truncated, control characters escaped (no forged lines)."""
    return repr(topic[:_TOPIC_LOGGED])[1:-1]


class Publisher(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def max_packet_size(self) -> int | None: ...

    def publish_soon(
        self, topic: str, payload: bytes, *, correlation_data: bytes | None = None
    ) -> asyncio.Future[None]:
        """Publish at QoS 1; the future resolves at the PUBACK (or fails as ``publish``
        would raise): a round of events is then futures, not a task per event."""
        ...


#: ``check(event, max_packet_size)`` → (kind, reason) when the event cannot be published.
Check = Callable[[OutboxEvent, int | None], tuple[str, str] | None]


def check_event(event: OutboxEvent, max_packet_size: int | None) -> tuple[str, str] | None:
    """The default :data:`Check`: topic name rules, then the packet size."""
    problem = topic_name_problem(event.topic)
    if problem is not None:
        return "invalid_topic", problem
    problem = size_problem(event.topic, event.payload, event.correlation_data, max_packet_size)
    if problem is not None:
        return "too_large", problem
    return None


@dataclass(slots=True)
class _Round:
    """What became of the events of one publishing round."""

    done: list[int] = field(default_factory=list)
    #: (event, kind, reason) to set aside.
    aside: list[tuple[OutboxEvent, str, str]] = field(default_factory=list)
    #: Sent, and the connection dropped before their PUBACK.
    lost: list[OutboxEvent] = field(default_factory=list)
    #: Not sent (not connected) or failed for a passing reason.
    unsent: list[OutboxEvent] = field(default_factory=list)
    #: Events actually handed to the publisher.
    published: int = 0
    #: A drop came within POISON_WINDOW of the round's start.
    quick_drop: bool = False


class OutboxPublisher:
    def __init__(
        self,
        store: StoreAPI,
        mqtt: Publisher,
        *,
        batch: int = BATCH,
        check: Check = check_event,
        on_set_aside: Callable[[str], None] | None = None,
        on_published: Callable[[list[str]], None] | None = None,
    ) -> None:
        """``check`` finds events not to publish at all (replaceable for tests of what the
        broker does with them); ``on_set_aside(kind)`` is called per event set aside, kind
        one of ``invalid_topic``, ``too_large``, ``refused``, ``disconnect``;
        ``on_published(topics)`` once per round with the topics the broker acknowledged
        (one call a round, not a callback per event)."""
        self._store = store
        self._mqtt = mqtt
        self._batch = batch
        self._check = check
        self._on_set_aside = on_set_aside
        self._on_published = on_published
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = False
        #: Groups of events still to publish after a drop, in order (see module doc).
        self._suspects: deque[list[OutboxEvent]] = deque()
        #: event id → (drops that followed it when it was published alone, ``published``
        #: at the last of them).
        self._strikes: dict[int, tuple[int, int]] = {}
        self.published = 0
        self.set_aside = 0

    def wake(self) -> None:
        """New events were committed: publish them now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        after = 0
        #: The previous round's ack / set-aside, still going to the store while the next
        #: round (of events after that round's) is published; awaited before the next
        #: round's, so the acks go in order, and before a read from the start.
        settling: asyncio.Task[None] | None = None
        #: After a full round, the next round's read (the events after this round's), sent
        #: to the store as this round's PUBLISHes go out, so that the store's round trip
        #: overlaps the wait for the PUBACKs instead of following it (docs/performance.md,
        #: step 73). Not after a partial round: at half load it was one more store
        #: operation a round, mostly empty (step 75). Dropped unread when the round
        #: fails: the next read starts from the beginning.
        ahead: asyncio.Task[list[OutboxEvent]] | None = None
        try:
            while not self._stopping:
                if settling is not None and (after == 0 or not self._mqtt.connected):
                    # A read from the start must not see the round being acknowledged.
                    await settling
                    settling = None
                if not self._mqtt.connected:
                    await _drop(ahead)
                    ahead = None
                    self._idle.clear()
                    await self._sleep(0.2)
                    continue
                if self._suspects:
                    await _drop(ahead)
                    ahead = None
                    self._idle.clear()
                    await self._isolate(self._suspects.popleft())
                    after = 0  # then one pass from the start, as after any failure
                    continue
                try:
                    if ahead is not None:
                        reading, ahead = ahead, None
                        events = await reading
                    else:
                        events = await self._store.pending_events(self._batch, after_id=after)
                except StoreError as exc:
                    log.warning("outbox_read_failed", error=str(exc))
                    await self._sleep(1.0)
                    continue
                if not events:
                    if after:
                        after = 0  # one pass from the start picks up anything skipped
                        continue
                    self._idle.set()
                    await self._sleep(1.0)
                    continue
                self._idle.clear()
                if len(events) >= self._batch:  # a full round: more are likely waiting
                    ahead = asyncio.ensure_future(
                        self._store.pending_events(self._batch, after_id=events[-1].event_id)
                    )
                result = await self._send(events)
                if result.lost:
                    self._after_drop(result)
                if settling is not None:  # one ack in flight at a time, in round order
                    await settling
                    settling = None
                if result.lost or result.unsent:
                    await _drop(ahead)
                    ahead = None
                    await self._settle(result)
                    after = 0
                    await self._sleep(0.5)
                else:
                    settling = asyncio.ensure_future(self._settle(result))
                    after = events[-1].event_id
        finally:
            await _drop(ahead)
            if settling is not None:
                await settling

    async def _isolate(self, group: list[OutboxEvent]) -> None:
        """Publish one group of suspects; split it again if the connection drops."""
        result = await self._publish(group)
        if result.lost:
            self._after_drop(result)
        elif result.unsent:
            self._suspects.appendleft(result.unsent)  # never sent: try them again as they are
        if result.lost or result.unsent:
            await self._sleep(0.2)

    def _after_drop(self, result: _Round) -> None:
        """The connection dropped with events of ``result`` in flight: one of them may be
        why. Alone in flight, it is struck; else what failed is published again in halves."""
        if result.published == 1 and len(result.lost) == 1:
            self._strike(result.lost[0], quick=result.quick_drop)
        else:
            self._split(result.lost + result.unsent)

    def _split(self, events: list[OutboxEvent]) -> None:
        """Queue ``events`` (in id order) as two halves, ahead of any other suspects."""
        events = sorted(events, key=lambda e: e.event_id)
        if len(events) == 1:
            self._suspects.appendleft(events)
            return
        middle = len(events) // 2
        self._suspects.extendleft([events[middle:], events[:middle]])

    def _strike(self, event: OutboxEvent, *, quick: bool) -> None:
        """``event`` was alone in flight when the connection dropped (``quick``: soon
        after it was sent). It goes to the back of the suspects, so that the others show
        whether the broker takes anything at all before it is tried alone again."""
        strikes, mark = self._strikes.get(event.event_id, (0, -1))
        # Strike one, or a later one once some other event went through since the last:
        # a broker that drops everyone (a crash loop) must not look like a poison event.
        if quick and (strikes == 0 or self.published > mark or not self._suspects):
            strikes += 1
            self._strikes[event.event_id] = (strikes, self.published)
            log.info(
                "outbox_drop_after_event",
                event_id=event.event_id,
                topic=_shown(event.topic),
                strikes=strikes,
            )
        self._suspects.append([event])  # alone again; set aside by _publish at N strikes

    async def _publish(self, events: Sequence[OutboxEvent]) -> _Round:
        result = await self._send(events)
        await self._settle(result)
        return result

    async def _send(self, events: Sequence[OutboxEvent]) -> _Round:
        """Publish a round and wait for every PUBACK; :meth:`_settle` records the result."""
        result = _Round()
        ready: list[OutboxEvent] = []
        limit = self._mqtt.max_packet_size
        for event in events:
            if self._strikes.get(event.event_id, (0, 0))[0] >= POISON_STRIKES:
                result.aside.append((event, "disconnect", DISCONNECT_REASON))
                continue
            problem = self._check(event, limit)
            if problem is not None:
                result.aside.append((event, *problem))
            else:
                ready.append(event)
        loop = asyncio.get_running_loop()
        started = loop.time()
        publish = self._mqtt.publish_soon
        results = await asyncio.gather(
            *[publish(e.topic, e.payload, correlation_data=e.correlation_data) for e in ready],
            return_exceptions=True,
        )
        result.published = len(ready)
        acknowledged: list[str] = []
        for event, outcome in zip(ready, results, strict=True):
            if outcome is None:
                result.done.append(event.event_id)
                acknowledged.append(event.topic)
            elif isinstance(outcome, PublishRefused):
                result.aside.append((event, "refused", str(outcome)))
            elif isinstance(outcome, PublishLost):
                result.lost.append(event)
            elif isinstance(outcome, MqttUnavailable) or not isinstance(outcome, Exception):
                result.unsent.append(event)
            else:  # the client would not even build the packet: it never will
                result.aside.append((event, "refused", f"cannot publish: {outcome!r}"))
        if acknowledged and self._on_published is not None:
            self._on_published(acknowledged)
        if result.lost:
            result.quick_drop = loop.time() - started <= POISON_WINDOW
        if result.lost or result.unsent:
            log.info(
                "outbox_publish_deferred",
                failed=len(result.lost) + len(result.unsent),
                published=len(result.done),
            )
        return result

    async def _settle(self, result: _Round) -> None:
        """Delete what was published, set aside what will never be."""
        try:
            if result.done:
                await self._store.ack_events(result.done)
                self.published += len(result.done)
                for event_id in result.done:
                    self._strikes.pop(event_id, None)
            if result.aside:
                await self._store.set_aside([(e.event_id, why) for e, _, why in result.aside])
        except StoreError as exc:
            # Published events come again (at-least-once); the ones to set aside are found
            # again by the same check, PUBACK or strike count.
            log.warning("outbox_ack_failed", error=str(exc))
            return
        for event, kind, reason in result.aside:
            self._strikes.pop(event.event_id, None)
            self.set_aside += 1
            log.warning(
                "event_set_aside",
                event_id=event.event_id,
                topic=_shown(event.topic),
                kind=kind,
                reason=reason,
            )
            if self._on_set_aside is not None:
                self._on_set_aside(kind)

    async def _sleep(self, seconds: float) -> None:
        self._wakeup.clear()
        await wait_event(self._wakeup, seconds)

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (or ``timeout``); True when it is."""
        self.wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                if await self._store.outbox_size() == 0:
                    return True
            except StoreError:
                return False
            self.wake()
            await asyncio.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()


async def _drop(read: asyncio.Task[list[OutboxEvent]] | None) -> None:
    """A read ahead that will not be used: let it finish (it only reads) and forget it,
    its error included (the next read reports the store's state)."""
    if read is not None:
        with contextlib.suppress(Exception):
            await read
