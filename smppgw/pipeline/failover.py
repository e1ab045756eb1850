"""Failover: a job that its carrier cannot take moves to the next carrier of its chain.

A job's **chain** is fixed at intake (stored with it): the carrier it was routed to, then
that carrier's ``failover`` list. A number in the ported-number cache goes first to the
carrier it was ported to, then to its prefix carrier and that carrier's list. A job that
forces a ``carrier`` gets a chain only when it also says ``"failover": true``; a job that
says ``"failover": false`` never gets one.

A job moves to the next carrier of its chain it has not tried when:

* **down**: its carrier has had no bind up for ``failover_after`` (``failover_after_high``
  for ``high`` jobs), or an operator paused it (``smppgw ctl pause``; at once). Queued jobs
  move, and so do jobs the carrier holds that have written nothing; the carrier's feeder
  claims nothing more until a bind is back. Only to a carrier that is itself usable; if
  none is, the jobs wait where they are.
* **refused**: the SMSC answered a status listed in the carrier's ``failover_on``.
* **retries**: its transient retries were exhausted (``retries_exhausted``).

Never when its outcome is unknown (no submit_sm_resp, the link lost with it in the
window: ``unknown_outcome``), unless the carrier has ``resend_on_timeout`` (its timeouts
are then retried, and exhausted retries move): the no-double-send invariant wins. Never
once a part was accepted. A move is one store transaction that keeps the job's lane and
arrival order; the carriers that did not take it are kept as ``attempts`` and published
on its ``submitted`` and final events.

In a cluster (a shared PostgreSQL store) each gateway has binds of its own: a gateway
tells the others which carriers it can send to (``set_carrier_up``), and one whose
carrier is down leaves that carrier's queued jobs where they are while another live
gateway can send them (it stops claiming them and hands back those it holds, unsent);
they move only when the carrier is down on every gateway.

Learned ports: a number refused by its prefix carrier with a ``failover_on`` status and
then accepted by another is remembered, number → that carrier, for ``routing.ported_ttl``;
accepted again by its prefix carrier after a mapping sent it elsewhere, it is forgotten.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Protocol

from smppgw.config import CarrierConfig, Config
from smppgw.engine.message import OutboundMessage
from smppgw.engine.policy import parse_status
from smppgw.ops.logs import get_logger
from smppgw.ops.telemetry import Telemetry
from smppgw.pipeline.ported import (
    PortedLookup,
    SharedPortedLookup,
    read_ported_file,
    shown,
)
from smppgw.pipeline.routing import Router, RoutingError
from smppgw.store import Store, StoreAPI, StoredJob, StoreError
from smppgw.store.routes import FILE

log = get_logger("smppgw.failover")

#: How often the monitor looks at the carriers' binds, in seconds: well under a token of
#: any carrier that takes moved jobs.
TICK = 0.05
#: A store scan that moved nothing is not repeated sooner than this for that carrier.
RESCAN = 0.5
#: Seconds between refreshes of the ported-number gauge (a count over the table).
COUNT_EVERY = 30.0
#: Lanes: 0 high ... 2 low.
HIGH, LOWEST = 0, 2


class Sending(Protocol):
    """What failover needs of a carrier (``smppgw.engine.carrier.Carrier``)."""

    @property
    def ready(self) -> bool: ...

    def evict(
        self, select: Callable[[OutboundMessage], bool], max_lane: int
    ) -> list[OutboundMessage]: ...


class Claiming(Protocol):
    """What failover needs of a feeder (``smppgw.pipeline.feeder.Feeder``)."""

    def divert(self, diverted: bool) -> None: ...


def is_refusal(error: str) -> bool:
    """An attempt's error that is an SMPP status (a ``failover_on`` refusal)."""
    return error.startswith(("ESME_", "0x"))


class Failover:
    """Plans chains at intake, moves jobs after an outcome, and watches carriers go down."""

    def __init__(
        self,
        config: Config,
        router: Router,
        store: StoreAPI,
        telemetry: Telemetry,
        *,
        carriers: Mapping[str, Sending],
        feeders: Mapping[str, Claiming],
        paused: Collection[str],
        wake: Callable[[str], None],
        on_failing_over: Callable[[str, bool], None] = lambda name, on: None,
    ) -> None:
        self._store = store
        self._telemetry = telemetry
        self._carriers = carriers
        self._feeders = feeders
        self._paused = paused
        self._wake = wake
        self._on_failing_over = on_failing_over
        #: SQLite: a read-only connection of its own; a shared store: lookups through it
        #: (``smppgw.pipeline.ported``).
        self.ported: PortedLookup | SharedPortedLookup = (
            PortedLookup(store.path) if isinstance(store, Store) else SharedPortedLookup(store)
        )
        #: carrier → monotonic time its last bind went (absent: up).
        self._down_since: dict[str, float] = {}
        self._diverted: set[str] = set()
        #: carrier → monotonic time before which an idle store scan is not repeated.
        self._quiet_until: dict[str, float] = {}
        #: carrier → usable here, as last told to the store (``set_carrier_up``).
        self._told: dict[str, bool] = {}
        #: carrier → (monotonic time it is asked again, another gateway can send to it).
        self._elsewhere: dict[str, tuple[float, bool]] = {}
        self.reconfigure(config, router)

    def reconfigure(self, config: Config, router: Router) -> None:
        self._config = config
        self._router = router
        self._configs: dict[str, CarrierConfig] = {c.name: c for c in config.carriers}

    # ------------------------------------------------------------------ intake
    async def plan(
        self, destination: str, forced: str | None, allowed: bool | None
    ) -> tuple[str, tuple[str, ...]]:
        """The carrier a new job goes to, and its chain (empty: it never moves). Raises
        :class:`RoutingError` like :meth:`Router.route`. On SQLite it never suspends (the
        lookup is a synchronous probe); on a shared store it awaits the lookup."""
        found = self.plan_now(destination, forced, allowed)
        if found is not None:
            return found
        lookup = self.ported
        assert isinstance(lookup, SharedPortedLookup)  # plan_now answers for PortedLookup
        ported = await lookup.carrier(destination)
        return plan_chain(self._router, self._configs, destination, ported, forced, allowed)

    def plan_now(
        self, destination: str, forced: str | None, allowed: bool | None
    ) -> tuple[str, tuple[str, ...]] | None:
        """:meth:`plan` when it needs no await (no lookup, or SQLite's synchronous probe),
        None when the lookup must be awaited (a shared store). Intake calls this first:
        a coroutine per job for an answer that is already there was two frames of the
        event loop's work per job (issue 13)."""
        ported = None
        if forced is None and allowed is not False:
            lookup = self.ported
            if not isinstance(lookup, PortedLookup):
                return None
            ported = lookup.carrier(destination)
        return plan_chain(self._router, self._configs, destination, ported, forced, allowed)

    # ------------------------------------------------------------------ outcomes
    async def after_failure(
        self, carrier: str, job: StoredJob, status: str, code: str, accepted: int
    ) -> bool:
        """The job failed on ``carrier``: move it on (True) if its chain allows; False
        and nothing written otherwise (the caller records the failure)."""
        if accepted or not job.chain:
            return False
        if status == "rejected" and self._fails_over_on(carrier, code):
            reason = "refused"
        elif status == "failed" and code == "retries_exhausted":
            reason = "retries"
        else:
            return False  # unknown_outcome, expired, shutdown, text...: it stays
        to = self._pick(job.chain, job.attempts, carrier, job.lane, usable_only=False)
        if to is None:
            return False
        if not await self._store.move_job(job.job_id, carrier, to, code):
            return False
        self._moved(carrier, to, reason, 1)
        log.info(
            "job_failover", job_id=job.job_id, carrier=carrier, to=to, reason=reason, code=code
        )
        return True

    def _fails_over_on(self, carrier: str, code: str) -> bool:
        config = self._configs.get(carrier)
        if config is None or not config.failover_on:
            return False
        try:
            return parse_status(code) in config.failover_on
        except ValueError:
            return False  # not an SMPP status (ttl, text, encode)

    async def after_submit(self, carrier: str, job: StoredJob) -> None:
        """``carrier`` accepted a job that was refused elsewhere: learn (or forget) the
        number's port. A failure is logged: the cache is an optimisation."""
        refused = {name for name, error in job.attempts if is_refusal(error)}
        if not refused:
            return
        try:
            home = self._router.route(job.destination)
        except RoutingError:
            return
        try:
            if carrier == home:
                if await self._store.forget_port(job.destination) is not None:
                    log.info("port_forgotten", number=job.destination, carrier=carrier)
            elif home in refused:
                await self._store.learn_port(
                    job.destination, carrier, self._config.routing.ported_ttl
                )
                log.info("port_learned", number=job.destination, carrier=carrier, home=home)
        except StoreError as exc:
            log.warning("port_not_recorded", number=job.destination, error=str(exc))

    # ------------------------------------------------------------------ choosing
    def _pick(
        self,
        chain: tuple[str, ...],
        attempts: Iterable[tuple[str, str]],
        current: str,
        lane: int,
        *,
        usable_only: bool,
    ) -> str | None:
        """The first carrier of ``chain`` not tried yet that is usable; without
        ``usable_only``, else the first not tried (it waits there, and moves on from there
        if that carrier stays down)."""
        tried = {name for name, _ in attempts}
        tried.add(current)
        left = [name for name in chain if name not in tried and name in self._configs]
        now = time.monotonic()
        for name in left:
            if self._usable(name, lane, now):
                return name
        return None if usable_only or not left else left[0]

    def _usable(self, name: str, lane: int, now: float) -> bool:
        if name in self._paused or name not in self._carriers:
            return False
        since = self._down_since.get(name)
        if since is None:
            return True
        config = self._configs[name]
        return now - since < (config.failover_after_high if lane == HIGH else config.failover_after)

    # ------------------------------------------------------------------ down / paused
    async def run(self) -> None:
        """Watch every carrier's binds; move the jobs of one that is down or paused."""
        next_count = 0.0
        while True:
            now = time.monotonic()
            for name in list(self._carriers):
                try:
                    await self._watch(name, now)
                except StoreError as exc:
                    log.warning("failover_move_failed", carrier=name, error=str(exc))
            if now >= next_count:
                next_count = now + COUNT_EVERY
                await self.refresh_count()
            await asyncio.sleep(TICK)

    async def refresh_count(self) -> None:
        """The ``smppgw_ported_numbers`` gauge (off the event loop and the writer)."""
        try:
            count = await asyncio.to_thread(self.ported.count)
            if count is None:
                count = await self._store.count_ported()
        except (StoreError, sqlite3.Error) as exc:
            log.warning("ported_count_failed", error=str(exc))
            return
        self._telemetry.ported_numbers(count)

    async def _watch(self, name: str, now: float) -> None:
        carrier = self._carriers.get(name)
        config = self._configs.get(name)
        if carrier is None or config is None:
            return
        paused = name in self._paused
        up = carrier.ready and not paused
        if self._told.get(name) is not up:
            await self._store.set_carrier_up(name, up)
            self._told[name] = up
        if up:
            if self._down_since.pop(name, None) is not None:
                self._set_diverted(name, False)
            return
        since = self._down_since.setdefault(name, now)
        # Also without a failover list of its own: jobs moved here, or routed here as a
        # ported number, carry chains of their own.
        if paused:
            max_lane, error = LOWEST, "paused"
        elif now - since >= config.failover_after:
            max_lane, error = LOWEST, "down"
            self._set_diverted(name, True)
        elif now - since >= config.failover_after_high:
            max_lane, error = HIGH, "down"
        else:
            return
        if await self._up_elsewhere(name, now):
            if max_lane == LOWEST:  # no longer claiming here: another gateway sends them
                await self._hand_back(name, carrier)
            return
        await self._move_held(name, carrier, max_lane, error)
        await self._move_queued(name, max_lane, error, now)

    async def _up_elsewhere(self, name: str, now: float) -> bool:
        """Another gateway of the cluster can send to ``name`` (asked at most every
        ``RESCAN``; always False on SQLite)."""
        until, elsewhere = self._elsewhere.get(name, (0.0, False))
        if now >= until:
            elsewhere = await self._store.carrier_up_elsewhere(name)
            self._elsewhere[name] = (now + RESCAN, elsewhere)
        return elsewhere

    async def _hand_back(self, name: str, carrier: Sending) -> None:
        """The unsent jobs this gateway holds for ``name`` go back to the shared queue,
        at their place, for the gateways that have a bind."""
        taken = carrier.evict(lambda message: True, LOWEST)
        if taken:
            await self._store.release([message.job_id for message in taken])
            log.info("jobs_handed_back", carrier=name, jobs=len(taken))

    def _set_diverted(self, name: str, diverted: bool) -> None:
        """Stop (or resume) claiming for a carrier whose jobs go elsewhere."""
        if (name in self._diverted) == diverted:
            return
        feeder = self._feeders.get(name)
        if feeder is not None:
            feeder.divert(diverted)
        if diverted:
            self._diverted.add(name)
            log.warning("carrier_failing_over", carrier=name)
        else:
            self._diverted.discard(name)
            log.info("carrier_back", carrier=name)
        self._on_failing_over(name, diverted)

    async def _move_held(self, name: str, carrier: Sending, max_lane: int, error: str) -> None:
        """Jobs the carrier holds that have written nothing go on, each where its chain
        says; one with nowhere usable to go stays with the carrier."""
        targets: dict[str, str] = {}

        def select(message: OutboundMessage) -> bool:
            job = message.context
            if not isinstance(job, StoredJob) or not job.chain:
                return False
            to = self._pick(job.chain, job.attempts, name, job.lane, usable_only=True)
            if to is None:
                return False
            targets[job.job_id] = to
            return True

        taken = carrier.evict(select, max_lane)
        stuck: list[str] = []
        counts: dict[str, int] = {}
        for message in taken:
            to = targets[message.job_id]
            try:
                moved = await self._store.move_job(message.job_id, name, to, error)
            except StoreError:
                moved = False
            if moved:
                counts[to] = counts.get(to, 0) + 1
            else:
                stuck.append(message.job_id)
        if stuck:
            # Never written: back to this carrier's queue (recover() does it at the next
            # start if even this fails).
            await self._store.release(stuck)
        for to, n in counts.items():
            self._moved(name, to, "down", n)

    async def _move_queued(self, name: str, max_lane: int, error: str, now: float) -> None:
        if not any(self._store.queued(name, lane) for lane in range(max_lane + 1)):
            return
        if now < self._quiet_until.get(name, 0.0):
            return
        lane_for_pick = HIGH if max_lane == HIGH else 1
        # Which carriers are usable, decided now and handed over as plain data: the store
        # may run ``pick`` in its writer process.
        moment = time.monotonic()
        usable = frozenset(c for c in self._configs if self._usable(c, lane_for_pick, moment))
        pick = UsablePick(usable)
        moves = await self._store.move_queued(name, max_lane, pick, error)
        if not moves:
            self._quiet_until[name] = now + RESCAN
            return
        self._quiet_until.pop(name, None)
        counts: dict[str, int] = {}
        for move in moves:
            counts[move.to] = counts.get(move.to, 0) + 1
        for to, n in counts.items():
            self._moved(name, to, "down", n)

    def _moved(self, carrier: str, to: str, reason: str, n: int) -> None:
        self._telemetry.failover(carrier, to, reason, n)
        self._wake(to)
        if reason == "down":
            log.info("jobs_failover", carrier=carrier, to=to, reason=reason, jobs=n)

    # ------------------------------------------------------------------ ported_file
    async def load_ported_file(self) -> bool:
        """Replace the store's ``file`` mappings with ``routing.ported_file`` (at start and
        on reload). A broken file changes nothing and is logged with its problems."""
        path = self._config.routing.ported_file
        if path is None:
            return True
        parsed = await asyncio.to_thread(
            read_ported_file, path, self._config.routing.country_code, list(self._configs)
        )
        if parsed.problems:
            log.error("ported_file_refused", file=path, problems=shown(parsed.problems))
            return False
        try:
            report = await self._store.import_ported(parsed.entries, FILE, replace_source=True)
        except StoreError as exc:
            log.error("ported_file_not_loaded", file=path, error=str(exc))
            return False
        log.info(
            "ported_file_loaded",
            file=path,
            added=report.added,
            changed=report.changed,
            unchanged=report.unchanged,
            removed=report.removed,
        )
        await self.refresh_count()
        return True


class UsablePick:
    """The first carrier of a job's chain not tried yet that is in ``usable`` (None: none
    is): what ``Failover._pick`` decides with ``usable_only``, as plain, picklable data."""

    __slots__ = ("usable",)

    def __init__(self, usable: frozenset[str]) -> None:
        self.usable = usable

    def __call__(
        self, chain: tuple[str, ...], attempts: tuple[tuple[str, str], ...], current: str
    ) -> str | None:
        tried = {name for name, _ in attempts}
        tried.add(current)
        for name in chain:
            if name not in tried and name in self.usable:
                return name
        return None


def plan_chain(
    router: Router,
    configs: Mapping[str, CarrierConfig],
    destination: str,
    ported: str | None,
    forced: str | None = None,
    allowed: bool | None = None,
) -> tuple[str, tuple[str, ...]]:
    """A job's first carrier and its chain (see the module docstring); ``ported``: the
    carrier the number was ported to, if known. Shared by intake and ``smppgw routes``."""

    def own(carrier: str) -> tuple[str, ...]:
        config = configs.get(carrier)
        return (carrier, *config.failover) if config is not None and config.failover else ()

    if forced is not None:
        carrier = router.route(destination, forced)
        return carrier, own(carrier) if allowed else ()
    home = router.route(destination)
    if allowed is False:
        return home, ()
    if ported is None or ported == home or ported not in configs:
        return home, own(home)
    return ported, _distinct((ported, home, *own(home)[1:]))


def _distinct(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


__all__ = ["Failover", "is_refusal"]
