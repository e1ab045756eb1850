"""Cancels from MQTT: ``{"id": "<job id>"}`` on ``<cancel_topic>`` (a tenant's job: on
``<cancel_topic>/<tenant>``).

A job still queued ends ``cancelled`` (``GatewayEvents.cancel``: state, status event and
tenant bookkeeping in one go); its dedup key stays, so a re-published job of that id is
still a duplicate. A job claimed, submitted or final is never touched: a cancel must not
race a submit_sm. As for submit topics, the broker's ACL (``pattern write sms/cancel/%u``)
ties a tenant's cancel topic to its account, so the topic level names the tenant.

A cancel is idempotent and always acknowledged (PUBACK), whatever it carried. When it came
with an MQTT 5 Response Topic the envelope guard accepts, the answer
``{"id", "cancelled", "reason"}`` goes there through the store's outbox (durable, with the
Correlation Data echoed); a refused Response Topic gets nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import msgspec
import orjson
import structlog

from smppgw.config import MqttConfig
from smppgw.ops.telemetry import Telemetry
from smppgw.pipeline.envelope import EnvelopeGuard
from smppgw.pipeline.outcomes import GatewayEvents
from smppgw.store import JobView, OutboxEvent, StoreAPI

if TYPE_CHECKING:
    from smppgw.mqtt import Message

log = structlog.get_logger("smppgw.cancel")

#: What a cancel payload must look like: a JSON object with a job ``id``.
_ID_RULE = "a JSON object with a string id (1-64 of A-Z a-z 0-9 . _ : -)"
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")


class _Cancel(msgspec.Struct):
    id: object = None


def parse_id(payload: bytes) -> tuple[str | None, str | None]:
    """The job id of a cancel payload, or ``None`` and why it has no usable one."""
    try:
        job_id = msgspec.json.decode(payload, type=_Cancel).id
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None, f"not {_ID_RULE}"
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= 64 or set(job_id) - _ID_CHARS:
        return None, f"id: must be {_ID_RULE}"
    return job_id, None


def refusal(view: JobView | None) -> str:
    """Why a job was not cancelled (it was not queued)."""
    if view is None:
        return "unknown job"
    if view.state == "final":
        return f"already final ({view.status})"
    if view.state == "submitted":
        return "already submitted"
    return "being sent"  # claimed or in flight: a submit_sm is (about to be) on its way


class CancelHandler:
    """Takes the messages of ``<cancel_topic>`` and ``<cancel_topic>/<tenant>``."""

    def __init__(
        self,
        mqtt: MqttConfig,
        tenants: Callable[[], Collection[str]],
        events: GatewayEvents,
        store: StoreAPI,
        telemetry: Telemetry,
        on_events: Callable[[], None],
    ) -> None:
        """``tenants()``: the configured tenant names (read per message: reloads change
        them)."""
        self.topic = mqtt.cancel_topic.rstrip("/")
        self._guard = EnvelopeGuard(mqtt)
        self._tenants = tenants
        self._events = events
        self._store = store
        self._telemetry = telemetry
        self._on_events = on_events

    def owns(self, topic: str) -> bool:
        """``topic`` is the cancel topic or one tenant level below it."""
        return topic == self.topic or topic.rpartition("/")[0] == self.topic

    async def handle(self, message: Message) -> None:
        """Cancel what can be; returns once the outcome (and any answer) is committed."""
        job_id, problem = parse_id(message.payload)
        tenant = message.topic.removeprefix(self.topic + "/") if message.topic != self.topic else ""
        cancelled = False
        if job_id is None:
            result, reason = "invalid", problem
            log.warning("cancel_invalid", topic=message.topic, reason=problem)
        elif tenant and tenant not in self._tenants():
            result, reason = "not_cancelled", "unknown_tenant"
            log.warning("cancel_unknown_tenant", tenant=tenant[:64], id=job_id)
        else:
            key = f"{tenant}/{job_id}" if tenant else job_id
            view, cancelled = await self._events.cancel(key)
            result = "cancelled" if cancelled else "not_cancelled"
            reason = None if cancelled else refusal(view)
            log.info("cancel", id=key, cancelled=cancelled, reason=reason)
        await self._answer(message, job_id, cancelled, reason)
        self._telemetry.cancel(result)  # after the answer is in the outbox: tests rely on it

    async def _answer(
        self, message: Message, job_id: str | None, cancelled: bool, reason: str | None
    ) -> None:
        envelope = self._guard.check(message)
        if envelope.response_topic is None:
            if message.response_topic is not None:
                log.warning("cancel_answer_refused", problems="; ".join(envelope.problems))
            return
        answer: dict[str, object] = {"id": job_id, "cancelled": cancelled}
        if reason is not None:
            answer["reason"] = reason
        event = OutboxEvent(
            envelope.response_topic, orjson.dumps(answer), envelope.correlation_data
        )
        await self._store.add_events([event])
        self._on_events()
