"""Tenants: internal services that share one gateway, each on its own submit topic.

A tenant's jobs arrive on ``<submit_topic>/<name>``; the broker's ACL (``pattern write
sms/submit/%u``) is what ties that topic to the publisher's account, so the topic level is
the identity. Everything a tenant owns follows from it:

* **Id namespace.** Its jobs are stored under the key ``<name>/<id>``; ``/`` is not in the
  id alphabet, so no tenant's key can equal another's (or a default-tenant id), the store's
  UNIQUE job_id gives per-tenant deduplication, and ``<status_topic>/<key>`` is exactly
  ``sms/status/<name>/<id>``. Plain ``<submit_topic>`` is the default tenant: key = id.
* **Policy.** Which ``from`` values, priority lanes and forced carriers it may use.
* **Pacing.** ``rate`` and ``max_queued`` hold the MQTT handler (no PUBACK until admitted),
  so a fast publisher is slowed rather than refused. Each tenant has its own MQTT
  connection (see ``Gateway``): held handlers fill only that connection's Receive Maximum.
* **Quota.** Parts per day, counted in the same store transaction that adds the job.

The number of jobs a tenant has waiting (not yet submitted or final) is read from the store
once at start, then kept in memory: +1 when a job is added, -1 when the store records it
submitted or final (``left``), which are the only ways out of the waiting states.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from smppgw.config import CarrierConfig, Config, TenantConfig
from smppgw.engine.throttle import Throttle
from smppgw.mqtt import Declined
from smppgw.mqtt.schema import Job
from smppgw.ops.metrics import Metrics
from smppgw.ops.telemetry import TenantTelemetry
from smppgw.pipeline.routing import RoutingError, sender_source
from smppgw.smpp.text import TextError, split
from smppgw.store import StoreAPI, Usage

#: The tenant of plain ``<submit_topic>``; a tenant of this name puts rules on it.
DEFAULT = "default"


class UnknownTenant(LookupError):
    """A submit topic level that names no configured tenant."""

    def __init__(self, name: str) -> None:
        self.name = name
        shown = repr(name if len(name) <= 64 else name[:61] + "...")
        super().__init__(f"unknown_tenant: no tenant {shown} is configured")


class TenantClosed(Declined):
    """The gateway is stopping: a held job is not acknowledged (the broker keeps it)."""


@dataclass(eq=False)
class Tenant:
    """One tenant's rules and live state."""

    config: TenantConfig
    #: Prefix of its store keys: ``"<name>/"``, or ``""`` for the default tenant.
    prefix: str
    #: SMPP source addresses its ``from`` may become (``None``: any).
    senders: frozenset[str] | None
    throttle: Throttle | None
    #: Jobs in the store not yet submitted or final.
    waiting: int = 0
    #: Jobs let through ``admit`` and not yet committed (or refused).
    admitted: int = 0
    #: Handlers waiting for room under ``max_queued``, first come first served.
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    pacing: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.config.name

    def key(self, job_id: str) -> str:
        return self.prefix + job_id


def _senders(config: TenantConfig, country_code: str) -> frozenset[str] | None:
    """The configured senders as the SMPP address each becomes, so ``0912…``, ``+84912…``
    and ``84912…`` are the same sender."""
    if config.senders is None:
        return None
    found: set[str] = set()
    for sender in config.senders:
        with contextlib.suppress(RoutingError):  # the config check already named it
            found.add(sender_source(sender, country_code).address)
    return frozenset(found)


def _build(config: TenantConfig, country_code: str) -> Tenant:
    return Tenant(
        config=config,
        prefix="" if config.name == DEFAULT else f"{config.name}/",
        senders=_senders(config, country_code),
        throttle=Throttle(config.rate) if config.rate else None,
    )


def local_day(now: float) -> str:
    """The quota day: the gateway's local date (its ``TZ``), ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.localtime(now))


def parts_of(text: str, carrier: CarrierConfig) -> int:
    """The parts the carrier will send, by the very function it sends with; 0 when the
    text cannot be sent at all (the carrier fails the job, nothing is charged)."""
    try:
        return len(
            split(text, coding=carrier.coding, concat=carrier.concat, max_parts=carrier.max_parts)
        )
    except TextError:
        return 0


def _token(tenant: Tenant) -> float:
    """Take a rate token now and return 0.0, or return the seconds until one is due (the
    rate may have changed on reload while waiting: read it afresh every time)."""
    throttle = tenant.throttle
    if throttle is None:
        return 0.0
    wait = throttle.delay()
    if wait <= 0.0:
        throttle.take()
        return 0.0
    return wait


class Tenants:
    """Topic → tenant, the tenants' policies, admission (pacing) and their bookkeeping."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self._topic = config.mqtt.submit_topic
        self._tenants: dict[str, Tenant] = {}
        self._default: Tenant | None = None
        self._closed = asyncio.Event()
        self.metrics = TenantTelemetry(metrics)
        self._apply(config.tenants, config.routing.country_code)

    def _apply(self, tenants: Iterable[TenantConfig], country_code: str) -> None:
        for config in tenants:
            tenant = _build(config, country_code)
            if config.name == DEFAULT:
                self._default = tenant
            else:
                self._tenants[config.name] = tenant
        self.metrics.init([DEFAULT, *self._tenants])

    @property
    def names(self) -> list[str]:
        """Configured tenants with their own topic (not ``default``)."""
        return list(self._tenants)

    def topic_of(self, name: str) -> str:
        return f"{self._topic}/{name}"

    def reconfigure(self, config: Config) -> list[str]:
        """Take new rules and limits for the tenants already running; returns the names of
        tenants added or removed, which need a restart (their connections are not
        changed here) and are ignored until then."""
        country_code = config.routing.country_code
        wanted = {t.name: t for t in config.tenants}
        current = {t.name: t for t in self.all()}
        for name, tenant in current.items():
            new = wanted.get(name)
            if new is None:
                continue
            fresh = _build(new, country_code)
            tenant.config, tenant.senders = new, fresh.senders
            if new.rate != (tenant.throttle.tps if tenant.throttle else None):
                tenant.throttle = fresh.throttle
            self._wake(tenant)
        return sorted(set(wanted) ^ set(current))

    def all(self) -> list[Tenant]:
        found = list(self._tenants.values())
        return found if self._default is None else [self._default, *found]

    def resolve(self, topic: str) -> Tenant | None:
        """The tenant of a submit topic: ``None`` for the unrestricted default tenant;
        raises :class:`UnknownTenant` for a level that names no configured tenant."""
        if topic == self._topic:
            return self._default
        name = self.named(topic)
        if name is None:
            raise UnknownTenant(topic.removeprefix(self._topic + "/"))
        return self._tenants[name]

    def named(self, topic: str) -> str | None:
        """The configured tenant (with its own connection) whose topic this is."""
        name = topic.removeprefix(self._topic + "/")
        return name if name != topic and name in self._tenants else None

    async def load(self, store: StoreAPI) -> None:
        """Read each tenant's waiting jobs from the store (once, at start, after recovery)."""
        for tenant in self.all():
            tenant.waiting = await store.count_waiting(tenant.prefix or None)
            self._show(tenant)

    # ------------------------------------------------------------------ policy

    def refusal(self, tenant: Tenant, job: Job, country_code: str) -> tuple[str, str] | None:
        """``(code, reason)`` when the tenant may not send this job as it is."""
        config = tenant.config
        if config.priorities is not None and job.priority not in config.priorities:
            return (
                "priority_not_allowed",
                f"priority: tenant {config.name} may use {', '.join(config.priorities)}, "
                f"got {job.priority!r}",
            )
        if job.carrier is not None and not config.force_carrier:
            return "invalid", f"carrier: tenant {config.name} may not choose the carrier"
        if tenant.senders is not None and job.sender is not None:
            try:
                address = sender_source(job.sender, country_code).address
            except RoutingError:
                return None  # not a valid sender at all: to_outbound says why
            if address not in tenant.senders:
                allowed = ", ".join(config.senders or ())
                return (
                    "sender_not_allowed",
                    f"from: tenant {config.name} may use {allowed}, got {job.sender!r}",
                )
        return None

    def usage(self, tenant: Tenant, text: str, carrier: CarrierConfig, now: float) -> Usage:
        return Usage(
            tenant=tenant.name,
            day=local_day(now),
            parts=parts_of(text, carrier),
            limit=tenant.config.daily_parts,
        )

    # ------------------------------------------------------------------ admission

    async def admit(self, tenant: Tenant) -> None:
        """Wait until the tenant has room under ``max_queued`` and a token under ``rate``;
        the caller then owes exactly one :meth:`settled`. Raises :class:`TenantClosed`
        when the gateway stops meanwhile (the handler must not acknowledge)."""
        self.metrics.hold(tenant.name, 1)
        try:
            await self._room(tenant)
            try:
                await self._pace(tenant)
            except BaseException:
                self.settled(tenant, False)
                raise
        finally:
            self.metrics.hold(tenant.name, -1)

    async def _room(self, tenant: Tenant) -> None:
        self._check_open()
        limit = tenant.config.max_queued
        if limit is None or (not tenant.waiters and tenant.waiting + tenant.admitted < limit):
            tenant.admitted += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tenant.waiters.append(waiter)
        try:
            await waiter  # ``_wake`` counted us in ``admitted``
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.settled(tenant, False)
            else:
                with contextlib.suppress(ValueError):
                    tenant.waiters.remove(waiter)
            raise

    async def _pace(self, tenant: Tenant) -> None:
        if tenant.throttle is None:
            return
        async with tenant.pacing:  # one sleeper at a time, in arrival order
            while (wait := _token(tenant)) > 0.0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), wait)
                self._check_open()

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise TenantClosed("gateway stopping")

    def settled(self, tenant: Tenant, queued: bool) -> None:
        """An admitted job was committed (``queued``: as a new waiting job) or refused."""
        tenant.admitted -= 1
        if queued:
            tenant.waiting += 1
            self._show(tenant)
        self._wake(tenant)

    def left(self, key: str) -> None:
        """The store recorded job ``key`` submitted or final: it no longer waits."""
        name, slash, _ = key.partition("/")
        tenant = self._tenants.get(name) if slash else self._default
        if tenant is None or tenant.waiting <= 0:
            return
        tenant.waiting -= 1
        self._show(tenant)
        self._wake(tenant)

    def _wake(self, tenant: Tenant) -> None:
        limit = tenant.config.max_queued
        while tenant.waiters and (limit is None or tenant.waiting + tenant.admitted < limit):
            waiter = tenant.waiters.popleft()
            if not waiter.done():
                tenant.admitted += 1
                waiter.set_result(None)

    def _show(self, tenant: Tenant) -> None:
        self.metrics.show_waiting(tenant.name, tenant.waiting)

    def close(self) -> None:
        """Release every held handler with :class:`TenantClosed` (no PUBACK: redelivered
        to the next run)."""
        self._closed.set()
        for tenant in self.all():
            waiters, tenant.waiters = tenant.waiters, deque()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(TenantClosed("gateway stopping"))
