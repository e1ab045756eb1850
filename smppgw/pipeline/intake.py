"""MQTT ``sms/submit`` → store: validate, route, commit, and only then acknowledge.

The handler returns (and the MQTT client sends the PUBACK) only once the job, or its
rejection, is committed. If the store cannot commit, the handler raises: no PUBACK, and
the broker delivers the job again. Many handlers run at once, so the store's group commit
turns a burst of jobs into a few transactions.

Jobs validated in the same event-loop turn go to the store as one ``add_jobs`` call (one
writer operation for the whole burst instead of one per job): the writer's per-operation
cost (a SAVEPOINT, a future, a cross-thread wake-up) was a tenth of the gateway's CPU per
job in the end-to-end benchmark, and batching adds no wait, because the batch is flushed
at the end of the turn in which its first job arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import structlog

from smppgw.aio import RunningLoop
from smppgw.config import Config
from smppgw.mqtt import Message
from smppgw.mqtt.schema import (
    JobError,
    decode_job,
    encode_event,
    format_at,
    rejected_event,
    to_outbound,
)
from smppgw.ops.telemetry import Telemetry
from smppgw.pipeline.consent import ConsentDesk
from smppgw.pipeline.envelope import Envelope, EnvelopeGuard
from smppgw.pipeline.failover import Failover
from smppgw.pipeline.holds import Go, HoldReason, Holds, HoldUntil, timer_until
from smppgw.pipeline.marketing import Hold, Reject
from smppgw.pipeline.outcomes import EventFactory
from smppgw.pipeline.routing import Router, RoutingError, normalize_msisdn
from smppgw.pipeline.tenancy import DEFAULT, Tenant, Tenants, UnknownTenant
from smppgw.store import OutboxEvent, StoreAPI, StoredJob, Usage
from smppgw.store.ops import Admission

log = structlog.get_logger("smppgw.intake")

#: A job of this turn's batch: the job, its tenant's usage (None: not counted), its future.
_Pending = tuple[StoredJob, Usage | None, "asyncio.Future[Admission]"]


def _key(tenant: Tenant | None, job_id: str) -> str:
    """The store key of a job: ``<tenant>/<id>`` for a named tenant, else the id."""
    return job_id if tenant is None else tenant.key(job_id)


class Intake:
    def __init__(
        self,
        config: Config,
        store: StoreAPI,
        router: Router,
        factory: EventFactory,
        telemetry: Telemetry,
        tenants: Tenants,
        *,
        on_job: Callable[[str], None],
        on_events: Callable[[], None],
        failover: Failover | None = None,
        holds: Holds | None = None,
        consent: ConsentDesk | None = None,
    ) -> None:
        """``failover``: plans each job's carrier chain (ported numbers first); without
        it a job goes to its prefix (or forced) carrier and never moves. ``holds``: where
        a job with a future ``send_at`` (or one a release check holds) is held; ``None``:
        no holds (``send_at`` is then ignored). ``consent``: the marketing rules (the
        gateway's, shared with MO handling and reconfigured with it); None builds one from
        ``config`` and ``router``."""
        self._failover = failover
        self._holds = holds
        self._config = config
        self._consent = consent if consent is not None else ConsentDesk(config, router)
        self._guard = EnvelopeGuard(config.mqtt)
        self._store = store
        self._router = router
        self._factory = factory
        self._telemetry = telemetry
        self._on_job = on_job
        self._on_events = on_events
        self._tenants = tenants
        self._carriers = {c.name: c for c in config.carriers}
        #: Jobs waiting for the end of this event-loop turn, with their handlers' futures.
        self._batch: list[_Pending] = []
        #: The loop intake runs on, asked of asyncio once (``smppgw.aio``).
        self._running = RunningLoop()
        self._commits: set[asyncio.Future[None]] = set()

    def reconfigure(self, config: Config, router: Router) -> None:
        """Take a reloaded config's routes and limits for the next jobs."""
        self._config = config
        self._guard = EnvelopeGuard(config.mqtt)
        self._router = router
        self._carriers = {c.name: c for c in config.carriers}

    def handle(self, message: Message) -> Awaitable[object]:
        """Take one job: what is returned ends (PUBACK) once it or its rejection is
        committed. A tenant's job may first wait for its rate or for room under its
        max_queued. A plain function returning the coroutine that does it: no frame of
        its own per job."""
        try:
            tenant = self._tenants.resolve(message.topic)
        except UnknownTenant as exc:
            return self._unknown_tenant(message, exc)
        if tenant is None:
            return self._take(message, None, time.time())
        return self._take_for(message, tenant)

    async def _take_for(self, message: Message, tenant: Tenant) -> None:
        await self._tenants.admit(tenant)
        queued = False
        try:
            queued = await self._take(message, tenant, time.time())
        finally:
            self._tenants.settled(tenant, queued)

    async def _take(self, message: Message, tenant: Tenant | None, now: float) -> bool:
        """Validate, route and commit; True when a new job was queued."""
        # Checked first, so that no rejection (whatever its cause) goes to a refused
        # Response Topic.
        envelope = self._guard.check(message)
        try:
            job = decode_job(message.payload, max_payload=self._config.mqtt.max_payload)
        except JobError as exc:
            if exc.job_id is None:
                await self._garbage(message.payload, exc.reason)
            else:
                reason = "; ".join((exc.reason, *envelope.problems))
                await self._reject(_key(tenant, exc.job_id), "invalid", reason, envelope, now)
            return False
        key = _key(tenant, job.id)
        if envelope.problems:
            await self._reject(key, "invalid", "; ".join(envelope.problems), envelope, now)
            return False
        if job.category == "marketing":
            job = msgspec.structs.replace(job, text=self._consent.decorate(job.text))
        country_code = self._config.routing.country_code
        if tenant is not None:
            refusal = self._tenants.refusal(tenant, job, country_code)
            if refusal is not None:
                await self._reject(key, *refusal, envelope, now)
                return False
        try:
            destination = normalize_msisdn(job.to, country_code)
            route = self._route_now(destination, job.carrier, job.failover)
            if route is None:
                assert self._failover is not None
                route = await self._failover.plan(destination, job.carrier, job.failover)
            carrier, chain = route
            outbound = to_outbound(
                job,
                destination,
                now,
                country_code=country_code,
                registered_delivery=self._carriers[carrier].registered_delivery,
            )
        except RoutingError as exc:
            await self._reject(key, exc.code, f"to: {exc.reason}", envelope, now)
            return False
        except JobError as exc:
            await self._reject(key, "invalid", exc.reason, envelope, now)
            return False
        stored = StoredJob(
            job_id=key,
            carrier=carrier,
            lane=int(outbound.priority),
            destination=destination,
            text=outbound.text,
            source=outbound.source,
            dlr=outbound.dlr,
            expires_at=outbound.expires_at,
            response_topic=envelope.response_topic,
            correlation_data=envelope.correlation_data,
            received_at=now,
            category=job.category,
            chain=chain,
            expect_reply=job.expect_reply,
        )
        holds = self._holds
        if holds is not None:
            if job.send_at is not None and job.send_at > now:
                stored = holds.held(stored, job.send_at, HoldReason.SEND_AT)
            elif holds.checks and job.category != "marketing":
                # A marketing job is decided by the consent rules in the transaction that
                # adds it (``_commit``), where its count in the daily cap is taken too.
                decision = await holds.check(stored, now)
                if isinstance(decision, HoldUntil):
                    stored = holds.held(stored, decision.until, decision.reason)
                elif not isinstance(decision, Go):
                    await self._reject(key, decision.code, decision.reason, envelope, now)
                    return False
        usage = None
        if tenant is not None:
            usage = self._tenants.usage(tenant, outbound.text, self._carriers[carrier], now)
        new = await self._add(stored, usage)
        if isinstance(new, Reject):
            if new.code == "frequency_cap":
                self._telemetry.marketing_cap("reject")
            await self._reject(key, new.code, new.reason, envelope, now)
            return False
        held_until = stored.held_until
        if isinstance(new, Hold):
            held_until = self._held(key, stored, new)
            new = True
        if new is None:
            assert usage is not None and usage.limit is not None
            reason = (
                f"tenant {usage.tenant}: {usage.parts} more part(s) would exceed "
                f"daily_parts {usage.limit} for {usage.day}"
            )
            await self._reject(key, "quota_exceeded", reason, envelope, now)
            return False
        if new:
            self._telemetry.job_received(stored.lane)
            if held_until is None:
                self._on_job(carrier)
            else:
                assert holds is not None
                holds.scheduled(held_until)
                self._on_events()
            if usage is not None:
                self._tenants.metrics.received_job(usage.tenant, usage.parts)
        else:
            self._telemetry.job_duplicate()
            log.info("job_duplicate", job_id=key)
        return new

    def _held(self, key: str, job: StoredJob, hold: Hold) -> float | None:
        """A marketing job taken but held by the consent rules (window or deferred cap):
        when the held-jobs timer must look at it (None: no ``Holds``, it was parked in its
        lane until then instead)."""
        if hold.reason == "cap":
            self._telemetry.marketing_cap("defer")
        log.info("job_held", job_id=key, reason=hold.reason, send_at=format_at(hold.until))
        if self._holds is None:
            return None
        return timer_until(hold.until, job.expires_at)

    def _route_now(
        self, destination: str, forced: str | None, failover: bool | None
    ) -> tuple[str, tuple[str, ...]] | None:
        """The job's carrier and its failover chain (:mod:`smppgw.pipeline.failover`), or
        None when planning it must await a shared store's lookup."""
        if self._failover is None:
            return self._router.route(destination, forced), ()
        return self._failover.plan_now(destination, forced, failover)

    def _add(self, job: StoredJob, usage: Usage | None) -> asyncio.Future[Admission]:
        """Queue ``job`` for this turn's ``add_jobs``; resolves to True if it was new,
        None if its tenant's daily quota refused it, a Reject / Hold from the marketing
        rules (``smppgw.store.ops.add_admitted``)."""
        loop = self._running()
        future: asyncio.Future[Admission] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._flush)
        self._batch.append((job, usage, future))
        return future

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.ensure_future(self._commit(batch))
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)

    async def _commit(self, batch: list[_Pending]) -> None:
        jobs = [job for job, _, _ in batch]
        try:
            added: list[bool] | list[Admission]
            if any(u is not None or j.category == "marketing" for j, u, _ in batch):
                added = await self._store.add_admitted(
                    jobs,
                    [usage for _, usage, _ in batch],
                    self._consent.gate,
                    None if self._holds is None else self._holds.held,
                )
            else:
                added = await self._store.add_jobs(jobs)
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # every handler of the batch raises: no PUBACKs
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), new in zip(batch, added, strict=True):
            if not future.done():
                future.set_result(new)

    async def _reject(
        self, job_id: str, code: str, reason: str, envelope: Envelope, now: float
    ) -> None:
        events = self._factory.status(
            job_id,
            "rejected",
            carrier=None,
            code=code,
            reason=reason,
            response_topic=envelope.response_topic,
            correlation_data=envelope.correlation_data,
        )
        new = await self._store.add_rejected(
            job_id,
            events,
            code=code,
            response_topic=envelope.response_topic,
            correlation_data=envelope.correlation_data,
            received_at=now,
        )
        if new:
            self._telemetry.job_rejected(code)
            name, slash, _ = job_id.partition("/")
            self._tenants.metrics.rejected_job(name if slash else DEFAULT, code)
            log.info("job_rejected", job_id=job_id, code=code, reason=reason)
            self._on_events()
        else:
            self._telemetry.job_duplicate()

    async def _unknown_tenant(self, message: Message, exc: UnknownTenant) -> None:
        """A job for a tenant nobody configured: nothing is stored under it (its ids
        would be nobody's namespace); ``sms/rejected`` says which topic level was wrong."""
        await self._publish_rejected(message.payload, str(exc))
        self._tenants.metrics.unknown_topic()
        log.warning("tenant_unknown", topic=message.topic[:200], size=len(message.payload))

    async def _garbage(self, payload: bytes, reason: str) -> None:
        await self._publish_rejected(payload, reason)
        self._telemetry.garbage_payload()
        log.warning("payload_garbage", reason=reason, size=len(payload))

    async def _publish_rejected(self, payload: bytes, reason: str) -> None:
        """Commit a ``sms/rejected`` event for a payload that is no job we can answer by id."""
        event = rejected_event(payload, reason, format_at(time.time()))
        await self._store.add_events(
            [OutboxEvent(self._factory.rejected_topic, encode_event(event))]
        )
        self._on_events()
