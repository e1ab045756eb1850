"""Outbox publisher: events committed to the store flow to the broker from here.

Every status event, receipt outcome and MO is first committed to the store's outbox in
the same transaction as the state change that caused it; this task publishes them at
QoS 1 and deletes each only after its PUBACK. So a broker that is away, or a crash between
commit and publish, delays events but never loses them (at-least-once: a crash after the
PUBACK and before the delete publishes that event again).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from smppgw.aio import wait_event
from smppgw.store import OutboxEvent, Store, StoreError

log = structlog.get_logger("smppgw.outbox")

#: Events read from the store per round; published concurrently (the MQTT client keeps
#: them under the broker's Receive Maximum).
BATCH = 500


class Publisher(Protocol):
    @property
    def connected(self) -> bool: ...

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, correlation_data: bytes | None = None
    ) -> None: ...


class OutboxPublisher:
    def __init__(self, store: Store, mqtt: Publisher, *, batch: int = BATCH) -> None:
        self._store = store
        self._mqtt = mqtt
        self._batch = batch
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = False
        self.published = 0

    def wake(self) -> None:
        """New events were committed: publish them now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        after = 0
        while not self._stopping:
            if not self._mqtt.connected:
                self._idle.clear()
                await self._sleep(0.2)
                continue
            try:
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
            done, failed = await self._publish(events)
            if done:
                try:
                    await self._store.ack_events(done)
                except StoreError as exc:
                    log.warning("outbox_ack_failed", error=str(exc))
                self.published += len(done)
            if failed:
                after = 0
                await self._sleep(0.5)
            else:
                after = events[-1].event_id

    async def _publish(self, events: list[OutboxEvent]) -> tuple[list[int], int]:
        results = await asyncio.gather(
            *(
                self._mqtt.publish(e.topic, e.payload, qos=1, correlation_data=e.correlation_data)
                for e in events
            ),
            return_exceptions=True,
        )
        done: list[int] = []
        failed = 0
        for event, result in zip(events, results, strict=True):
            if isinstance(result, BaseException):
                failed += 1
            else:
                done.append(event.event_id)
        if failed:
            log.info("outbox_publish_deferred", failed=failed, published=len(done))
        return done, failed

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
