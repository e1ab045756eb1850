"""Composition root: builds the parts from a ``Config``, runs them, drains them.

Data flows one way (docs/architecture.md): MQTT intake → store → feeder → carrier → SMSC,
and carrier outcomes → store (with outbox events) → outbox publisher → MQTT. This module
owns only the wiring and the lifecycle: start order, SIGHUP reloads, and the SIGTERM drain.
The parts are built, and started, in that order; each lifetime is a context in one
``AsyncExitStack``, so whatever was started is stopped in reverse, also when a start fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

from smppgw.aio import Spawn, supervised
from smppgw.collector import collect_seldom
from smppgw.config import CarrierConfig, Config, ConfigError, MqttConfig
from smppgw.config.loader import load_config
from smppgw.engine.carrier import Carrier
from smppgw.engine.reconfig import diff
from smppgw.mqtt import Declined, MqttClient, MqttError
from smppgw.mqtt._gmqtt import GmqttChanged
from smppgw.ops import notify
from smppgw.ops.control import Control
from smppgw.ops.ctl import CtlServer
from smppgw.ops.health import HealthState, run_heartbeat
from smppgw.ops.http import HttpEndpoint
from smppgw.ops.logs import register_secret, set_level, setup_logging
from smppgw.ops.metrics import Metrics
from smppgw.ops.telemetry import Telemetry
from smppgw.pipeline.cancel import CancelHandler
from smppgw.pipeline.consent import ConsentDesk
from smppgw.pipeline.failover import Failover
from smppgw.pipeline.feeder import Feeder
from smppgw.pipeline.holds import Holds
from smppgw.pipeline.inbound import MoEvents
from smppgw.pipeline.intake import Intake
from smppgw.pipeline.marketing import DAY
from smppgw.pipeline.marketing_check import marketing_check
from smppgw.pipeline.outbox import OutboxPublisher
from smppgw.pipeline.outcomes import EventFactory, GatewayEvents
from smppgw.pipeline.routing import Router
from smppgw.pipeline.tenancy import Tenants
from smppgw.store import Store, StoreError
from smppgw.store.factory import describe, make_store

if TYPE_CHECKING:
    from smppgw.cluster.leases import LeaseKeeper
    from smppgw.cluster.ratelimit import RedisRates
    from smppgw.engine.throttle import Throttle
    from smppgw.smpp.session import BindGate

log = structlog.get_logger("smppgw.gateway")

#: Seconds between metric refreshes from the store and the carriers.
METRICS_EVERY = 1.0
#: Seconds between purges of finished jobs older than the retention period.
PURGE_EVERY = 3600.0
#: Seconds the outbox gets to empty itself at shutdown.
FLUSH_TIMEOUT = 5.0


async def _nothing() -> None:
    """Awaited for a message that needs no handling (acknowledged at once)."""


class Gateway:
    """The daemon. ``await Gateway(config).run()`` until SIGTERM/SIGINT; returns the exit
    code. ``stop()`` does what SIGTERM does (for tests and embedding)."""

    def __init__(self, config: Config, *, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self._stop = asyncio.Event()
        #: Set once everything is started (tests and embedding wait for it).
        self.started = asyncio.Event()
        self._signals = 0
        self._accepting = False
        #: Set while running: feeders live in one task group, the services in another.
        self._feeder_tasks_spawn: Spawn | None = None
        self._services_spawn: Spawn | None = None

        # Operations: what every stage reports to.
        self.metrics = Metrics()
        self.carrier_configs: dict[str, CarrierConfig] = {c.name: c for c in config.carriers}
        self.telemetry = Telemetry(self.metrics, self.carrier_configs)
        self.health = HealthState(policy=config.metrics.ready_policy)
        self.http = HttpEndpoint(self.metrics, self.health)
        # The store every stage writes to (queue, message ids, outbox).
        self.store = make_store(config, on_batch=self.telemetry.store_batch)
        #: With the shared (PostgreSQL) store: this node's lease and the takeover of dead
        #: nodes' work (smppgw.cluster.leases); None with SQLite.
        self.leases: LeaseKeeper | None = None
        #: With ``cluster.redis``: the carriers' tps shared by the cluster; None without.
        self.rates: RedisRates | None = None
        if config.cluster.redis is not None:
            from smppgw.cluster.ratelimit import RedisRates

            self.rates = RedisRates(config.cluster.redis.reveal(), live=self._live_gateways)
        self._exit_code = 0
        self.factory = EventFactory(config.mqtt)

        # 1. MQTT in → store: the main connection, one per named tenant (a tenant held by its
        # rate or max_queued fills only its own connection's Receive Maximum), the intake.
        self.mqtt = MqttClient(
            config.mqtt,
            on_message=self._on_message,
            on_connection_change=self._on_connection_change,
            replay_inflight=False,  # the outbox publishes again whatever failed
        )
        self.tenants = Tenants(config, self.metrics)
        # 2. store → feeder → carrier → SMSC: one pair per carrier (see _add_carrier).
        self.carriers: dict[str, Carrier] = {}
        self.feeders: dict[str, Feeder] = {}
        self._feeder_tasks: dict[str, asyncio.Task[None]] = {}
        #: Carriers an operator paused (``smppgw ctl pause``); kept across reloads.
        self.paused: set[str] = set()
        router = Router(config.carriers, config.routing)
        # The consent rules (marketing gate, label, MO keywords), shared by intake, MO and
        # the held jobs' release.
        self.consent = ConsentDesk(config, router)
        # Chains at intake, moves after an outcome or while a carrier is down.
        self.failover = Failover(
            config,
            router,
            self.store,
            self.telemetry,
            carriers=self.carriers,
            feeders=self.feeders,
            paused=self.paused,
            wake=self._job_committed,
            on_failing_over=self.health.set_failing_over,
        )
        self.tenant_mqtt = {
            name: MqttClient(
                replace(config.mqtt, client_id=f"{config.mqtt.client_id}.{name}"),
                on_message=self._on_tenant_message,
            )
            for name in self.tenants.names
        }
        # 3. carrier outcomes → store, with the events they cause.
        self.events = GatewayEvents(
            self.store,
            self.factory,
            self.telemetry,
            self._events_committed,
            on_left=self.tenants.left,
            failover=self.failover,
            mo=MoEvents.from_config(config),
            consent=self.consent,
            on_job=self._job_committed,
        )
        # Held jobs (send_at; the marketing rules' window and cap): one timer, released
        # into the lanes when due. Release checks are registered with holds.add_check.
        self.holds = Holds(
            self.store,
            self.factory,
            self.events,
            on_released=self._job_committed,
            on_events=self._events_committed,
        )
        self.holds.add_check(marketing_check(self.store, self.consent, self.telemetry))
        self.intake = Intake(
            config,
            self.store,
            router,
            self.factory,
            self.telemetry,
            self.tenants,
            on_job=self._job_committed,
            on_events=self._events_committed,
            failover=self.failover,
            holds=self.holds,
            consent=self.consent,
        )
        # Cancels from MQTT (main connection): queued jobs end ``cancelled``.
        self.cancels = CancelHandler(
            config.mqtt,
            lambda: self.tenants.names,
            self.events,
            self.store,
            self.telemetry,
            self._events_committed,
        )
        # 4. store's outbox → MQTT, on a connection of its own: on the intake's, the
        # PUBACKs of the events queue behind the jobs the broker streams to us, and during
        # a burst an outbox round waited up to 1.2 s for them (docs/performance.md, step
        # 72). No session: it subscribes to nothing, and the outbox publishes again
        # whatever was not acknowledged.
        self.events_mqtt = MqttClient(
            replace(config.mqtt, client_id=events_client_id(config.mqtt), session_expiry=0),
            on_connection_change=self._on_events_connection_change,
            replay_inflight=False,
        )
        self.outbox = OutboxPublisher(
            self.store,
            self.events_mqtt,
            on_set_aside=self.telemetry.event_set_aside,
            on_published=self.telemetry.events_counter(config.mqtt),
        )

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, install_signals: bool = True) -> int:
        """Run until ``stop()`` or a signal; ``install_signals=False`` leaves the process's
        signal handling alone (embedding, tests)."""
        if install_signals:
            self._install_signals()
        async with contextlib.AsyncExitStack() as lifetimes:
            try:
                await self._start(lifetimes)
            except StoreError as exc:
                log.error("store_unusable", store=describe(self.config), error=str(exc))
                return 1
            except MqttError as exc:  # refused credentials, untrusted certificate
                log.error("mqtt_refused", host=self.config.mqtt.host, error=str(exc))
                return 1
            notify.ready("connected; binds attempted")
            log.info(
                "gateway_ready",
                carriers=list(self.carriers),
                submit_topic=self.config.mqtt.submit_topic,
            )
            self.started.set()
            await self._stop.wait()
            await self._drain()
            # Leaving the block: services cancelled, MQTT disconnected, store closed, HTTP off.
        log.info("gateway_stopped")
        return self._exit_code

    def stop(self) -> None:
        self._stop.set()

    async def _start(self, lifetimes: contextlib.AsyncExitStack) -> None:
        """Start the parts in data-flow order, each lifetime entered into ``lifetimes``."""
        config = self.config
        if config.metrics.listen:
            self.metrics.init_carriers(config.carriers)
            self.http.start(config.metrics.listen)
            lifetimes.callback(self.http.stop)
        self.health.set_carriers(self.carrier_configs)
        await self.store.open()
        lifetimes.push_async_callback(self.store.close)
        if self.rates is not None:
            lifetimes.push_async_callback(self.rates.close)
        await self._recover()
        self.leases = self._lease_keeper()
        self.failover.ported.open()
        lifetimes.callback(self.failover.ported.close)
        await self.failover.load_ported_file()
        await self.tenants.load(self.store)
        # From here on, consent changes made by `smppgw consent` are counted.
        self.telemetry.consent_totals(await self.store.consent_counts())
        # Carriers (and their feeders) next: ready for jobs before any connection, since a
        # session that is present hands us its queued jobs at once (before the last client
        # is even connected). At exit, carriers not drained (a failed start) stop unsent.
        self._feeder_tasks_spawn = await lifetimes.enter_async_context(supervised(log))
        lifetimes.push_async_callback(self._remove_carriers, 0.0)
        for carrier_config in config.carriers:
            await self._add_carrier(carrier_config)
        self._accepting = True
        # First in, so it closes last: the outbox publishes until the services stop.
        await lifetimes.enter_async_context(self.events_mqtt)
        await lifetimes.enter_async_context(self.mqtt)
        for client in self.tenant_mqtt.values():
            await lifetimes.enter_async_context(client)
        # Services that use all of the above, so cancelled before any of it closes.
        spawn = self._services_spawn = await lifetimes.enter_async_context(supervised(log))
        lifetimes.callback(setattr, self, "_services_spawn", None)
        spawn(self._subscribe(), "subscribe")
        spawn(self.outbox.run(), "outbox")
        spawn(self.holds.run(), "holds")
        spawn(run_heartbeat(self.health), "heartbeat")
        spawn(self._refresh_metrics(), "metrics")
        spawn(self._purge(), "purge")
        if self.leases is not None:
            spawn(self.leases.run(), "leases")
        spawn(self.failover.run(), "failover")
        if isinstance(self.store, Store) and self.store.writer_lost is not None:
            spawn(self._watch_writer(self.store.writer_lost), "store writer")
        spawn(notify.run_watchdog(self.health.alive), "watchdog")
        # Last in, first out: the control socket closes before anything it reaches.
        if config.ctl.socket is not None:
            await lifetimes.enter_async_context(
                CtlServer(
                    config.ctl.socket,
                    Control(self).handle,
                    self.metrics,
                    allow_uids=lambda: self.config.ctl.allow_uids,
                )
            )

    def _resend_on_timeout(self, name: str) -> bool:
        config = self.carrier_configs.get(name)
        return config.resend_on_timeout if config is not None else False

    def _lease_keeper(self) -> LeaseKeeper | None:
        """Only the shared store has leases (imported only then)."""
        from smppgw.store.pg import PostgresStore

        if not isinstance(self.store, PostgresStore):
            return None
        from smppgw.cluster.leases import LeaseKeeper

        return LeaseKeeper(
            self.store,
            resend_on_timeout=self._resend_on_timeout,
            make_events=self.factory.for_view,
            on_requeued=self._wake_feeders,
            on_events=self._events_committed,
            on_fenced=self._fence,
            on_lost=self._lease_lost,
        )

    def _live_gateways(self) -> int:
        return self.leases.live if self.leases is not None else 1

    def _cluster_throttle(self, carrier_config: CarrierConfig) -> Throttle | None:
        if self.rates is None:
            return None
        return self.rates.throttle(carrier_config.name, carrier_config.tps)

    def _bind_gate(self, carrier_config: CarrierConfig) -> BindGate | None:
        """``max_binds``: each bind takes a slot in the shared store first."""
        if carrier_config.max_binds is None or self.leases is None:
            return None
        from smppgw.cluster.binds import BindSlots
        from smppgw.store.pg import PostgresStore

        assert isinstance(self.store, PostgresStore)
        name = carrier_config.name

        def max_binds() -> int:
            config = self.carrier_configs.get(name, carrier_config)
            return config.max_binds or carrier_config.max_binds or 1

        return BindSlots(self.store).gate(name, max_binds)

    def _wake_feeders(self) -> None:
        for feeder in self.feeders.values():
            feeder.wake()

    def _fence(self, fenced: bool) -> None:
        """Lease about to run out: start no new submit_sm (binds and windows carry on)."""
        for name, carrier in self.carriers.items():
            carrier.hold(fenced or name in self.paused)

    def _lease_lost(self) -> None:
        """Another gateway may own our claims now: stop (the service manager restarts us
        and recovery starts from the store)."""
        self._exit_code = 75  # EX_TEMPFAIL
        self.stop()

    async def _watch_writer(self, lost: asyncio.Event) -> None:
        """The store's writer process died (``store.writer: process``): every store
        operation fails from now on, so stop, as after a lost lease; the service manager
        restarts us and recovery starts from the file, which holds every commit."""
        await lost.wait()
        log.error("store_writer_lost", store=describe(self.config))
        self._exit_code = 75  # EX_TEMPFAIL
        self.stop()

    async def _recover(self) -> None:
        """Jobs a previous run left half-done go back to their lanes (or end unknown)."""
        report = await self.store.recover(
            lambda name: (
                self.carrier_configs[name].resend_on_timeout
                if name in self.carrier_configs
                else False
            ),
            self.factory.for_view,
        )
        if report.requeued or report.resent or report.failed:
            log.warning(
                "recovered",
                requeued=report.requeued,
                resent=report.resent,
                unknown_outcome=len(report.failed),
            )

    async def _subscribe(self) -> None:
        """Subscribe, retrying while the broker is away (the session keeps it afterwards):
        the default tenant's topic, each tenant's topic on its own connection, and
        ``<submit_topic>/+`` on the main one to answer topics that name no tenant; then
        ``<cancel_topic>`` and ``<cancel_topic>/+`` (every tenant's cancels) on the main one."""
        topic = self.config.mqtt.submit_topic
        await self._subscribe_one(self.mqtt, topic)
        for name, client in self.tenant_mqtt.items():
            await self._subscribe_one(client, self.tenants.topic_of(name))
        try:
            await self.mqtt.subscribe(f"{topic}/+", qos=1)
        except MqttError as exc:  # an ACL without read on <submit_topic>/#
            log.error("unknown_tenant_detection_off", topic=f"{topic}/+", error=str(exc))
        cancel = self.cancels.topic
        await self._subscribe_one(self.mqtt, cancel)
        await self._subscribe_one(self.mqtt, f"{cancel}/+")

    async def _subscribe_one(self, client: MqttClient, topic: str) -> None:
        while not self._stop.is_set():
            try:
                await client.subscribe(topic, qos=1)
                return
            except Exception as exc:
                log.warning("subscribe_failed", topic=topic, error=str(exc))
                await asyncio.sleep(1.0)

    async def _add_carrier(self, carrier_config: CarrierConfig) -> None:
        assert self._feeder_tasks_spawn is not None
        carrier = Carrier(
            carrier_config,
            self.events,
            observer=self.telemetry,
            throttle=self._cluster_throttle(carrier_config),
            bind_gate=self._bind_gate(carrier_config),
            shared_store=self.leases is not None,
        )
        self.carriers[carrier_config.name] = carrier
        feeder = Feeder(carrier_config.name, self.store, carrier)
        self.feeders[carrier_config.name] = feeder
        if carrier_config.name in self.paused:
            feeder.pause()
            carrier.hold(True)
        await carrier.start()
        self._feeder_tasks[carrier_config.name] = self._feeder_tasks_spawn(
            feeder.run(), f"feeder/{carrier_config.name}"
        )

    def set_paused(self, name: str, paused: bool) -> None:
        """``smppgw ctl pause``: the carrier's feeder claims nothing more and the carrier
        starts no new job; binds stay up, submits in a window get their answers."""
        if paused:
            self.paused.add(name)
        else:
            self.paused.discard(name)
        self.health.set_paused(name, paused)
        feeder = self.feeders.get(name)
        if feeder is not None:
            if paused:
                feeder.pause()
            else:
                feeder.resume()
        carrier = self.carriers.get(name)
        if carrier is not None:
            carrier.hold(paused)

    def wake_feeder(self, name: str) -> None:
        """A job was put back in ``name``'s lane outside the intake (``jobs requeue``)."""
        self._job_committed(name)

    async def _remove_carrier(self, name: str, drain_timeout: float) -> None:
        feeder = self.feeders.pop(name)
        feeder.stop()
        task = self._feeder_tasks.pop(name)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        carrier = self.carriers.pop(name)
        await carrier.stop(drain_timeout)
        await self._release_unsent(name)

    async def _remove_carriers(self, drain_timeout: float) -> None:
        """Stop every carrier at once, each waiting up to ``drain_timeout`` for its
        in-flight submits; then whatever none of them sent goes back to its lane."""
        names = list(self.carriers)
        await asyncio.gather(*(self._remove_carrier(name, drain_timeout) for name in names))
        await self._release_unsent()

    async def _release_unsent(self, carrier: str | None = None) -> None:
        """Jobs a stopped carrier never sent go back to their lanes, in arrival order."""
        try:
            moved = await self.store.release_unsent(carrier)
        except StoreError as exc:
            log.error("release_failed", carrier=carrier, error=str(exc))
            return
        if moved:
            log.info("released_unsent", jobs=moved)

    async def _drain(self) -> None:
        """SIGTERM: stop sending (in-flight submits get ``drain_timeout``), publish what the
        outbox holds, then stop taking jobs; the lifetimes close the rest."""
        notify.stopping("draining")
        self.health.set_draining()
        log.info("gateway_stopping", drain_timeout=self.config.drain_timeout)
        await self._remove_carriers(self.config.drain_timeout)
        flushed = await self.outbox.flush(FLUSH_TIMEOUT)
        if not flushed:
            log.warning("outbox_not_empty_at_exit", note="published at next start")
        self._accepting = False
        self.tenants.close()  # held jobs are not acknowledged: the broker keeps them
        self.outbox.stop()

    # ------------------------------------------------------------------ wiring

    # The MQTT handlers return what the client awaits (a coroutine of intake, or of the
    # cancel desk) instead of awaiting it themselves: no coroutine frame of their own per
    # job. Raising here is as raising when awaited: no PUBACK.
    def _on_message(self, message: Any) -> Awaitable[object]:
        if self.cancels.owns(message.topic):
            if not self._accepting:
                raise Declined("gateway not accepting cancels")  # no PUBACK: redelivered
            return self.cancels.handle(message)
        name = self.tenants.named(message.topic)
        if name is not None and self.tenant_mqtt[name].subscribed(message.topic):
            # Seen through <submit_topic>/+: the broker has queued it for the tenant's own
            # connection too, which takes it. (Before that subscription exists, at the
            # first start, the job is taken here; a second copy is a duplicate.)
            return _nothing()
        return self._on_tenant_message(message)

    def _on_tenant_message(self, message: Any) -> Awaitable[object]:
        if not self._accepting:
            raise Declined("gateway not accepting jobs")  # no PUBACK: redelivered later
        return self.intake.handle(message)

    def _on_connection_change(self, connected: bool) -> None:
        """The intake's connection: jobs, cancels and their subscriptions."""
        self._mqtt_changed(connected)

    def _on_events_connection_change(self, connected: bool) -> None:
        """The outbox's connection: ready needs it too (events would only pile up)."""
        self._mqtt_changed(connected)
        if connected:
            self.outbox.wake()

    def _mqtt_changed(self, connected: bool) -> None:
        """Readiness and ``smppgw_mqtt_connected`` need both connections up (the gateway
        is of no use without either); ``smppgw_mqtt_connects_total`` counts each connect
        of either. Each client sets its own state before it calls back."""
        up = all(self.mqtt_connections.values())
        self.health.set_mqtt_connected(up)
        self.telemetry.mqtt_connection(up, connected=connected)

    @property
    def mqtt_connections(self) -> dict[str, bool]:
        """Each of the gateway's own broker connections, up or not (``smppgw ctl status``)."""
        return {"jobs": self.mqtt.connected, "events": self.events_mqtt.connected}

    def _job_committed(self, carrier: str) -> None:
        feeder = self.feeders.get(carrier)
        if feeder is not None:
            feeder.wake()

    def _events_committed(self) -> None:
        self.outbox.wake()

    async def _refresh_metrics(self) -> None:
        """Gauges that are cheaper to sample than to track: queue depths, outbox, binds.
        A failure is logged and the next round tries again; the heartbeat is separate."""
        while True:
            try:
                await self._refresh_once()
            except Exception:
                log.exception("metrics_refresh_failed")
            await asyncio.sleep(METRICS_EVERY)

    async def _refresh_once(self) -> None:
        try:
            self.telemetry.store_state(
                await self.store.queue_depths(),
                await self.store.outbox_size(),
                self.store.dead_events_count(),
                self.store.size_bytes(),
            )
            self.telemetry.consent_totals(await self.store.consent_counts())
            self.telemetry.jobs_held(self.store.held_counts())
        except StoreError as exc:
            self.health.set_problem("store", str(exc))
        else:
            self.health.set_problem("store", None)
        for name, carrier in self.carriers.items():
            self.health.set_binds(name, carrier.bound_sessions)
            for keeper in carrier.keepers:
                if keeper.mode == "receiver":
                    continue  # sends no submits: no window
                session = keeper.session
                in_flight = session.in_flight if session is not None else 0
                self.telemetry.window_in_use(name, keeper.slot, in_flight)

    async def _purge(self) -> None:
        while True:
            try:
                before = time.time() - self.config.store.retention
                purged = await self.store.purge(before)
                dead = await self.store.purge_dead_events(before)
                await self.store.purge_marketing_sends(time.time() - DAY)
                ported = await self.store.purge_ported()
                await self.store.purge_replies(time.time())
                if purged or dead or ported:
                    log.info("purged", jobs=purged, dead_events=dead, ported=ported)
            except StoreError as exc:
                log.warning("purge_failed", error=str(exc))
            await asyncio.sleep(PURGE_EVERY)

    # ------------------------------------------------------------------ signals, reload

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_stop_signal, sig)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            # Everything acknowledged is committed; what is in flight is recovered at start.
            log.warning("second_signal_exit_now", signal=sig.name)
            os._exit(1)
        log.info("stop_signal", signal=sig.name)
        self._stop.set()

    def _on_reload_signal(self) -> None:
        if self.config_path is None:
            log.warning("reload_ignored", reason="no config file")
            return
        if self._services_spawn is None:
            log.warning("reload_ignored", reason="not running")
            return
        self._services_spawn(self.reload(), "reload")

    async def reload(self) -> bool:
        """Re-read the config file: log level, routes, tenants, added and removed carriers,
        and changed carriers' settings, applied live with their binds kept; only a change
        to what identifies a bind rebinds that carrier (:mod:`smppgw.engine.reconfig`). A
        broken file is refused and the running config stays."""
        assert self.config_path is not None
        notify.reloading()
        try:
            new = load_config(self.config_path)
            if new.mqtt != self.config.mqtt or new.store != self.config.store:
                log.warning(
                    "reload_partial",
                    note="mqtt and store settings need a restart; the rest is applied",
                )
                new = replace(new, mqtt=self.config.mqtt, store=self.config.store)
            if new.ctl.socket != self.config.ctl.socket:
                log.warning("reload_partial", note="ctl.socket needs a restart")
                new = replace(new, ctl=replace(new.ctl, socket=self.config.ctl.socket))
        except (ConfigError, OSError) as exc:
            log.error("reload_refused", error=str(exc))
            self.telemetry.config_reload(ok=False)
            notify.ready("reload refused; old config kept")
            return False
        log_warnings(new)
        for carrier_config in new.carriers:
            register_secret(carrier_config.password)
        set_level(new.log.level)
        old = self.carrier_configs
        wanted = {c.name: c for c in new.carriers}
        for name in list(old):
            if name not in wanted:
                await self._remove_carrier(name, new.drain_timeout)
                self.telemetry.remove_carrier(name)
                self.paused.discard(name)
                self.health.set_paused(name, False)
            elif wanted[name] != old[name]:
                await self._reconfigure_carrier(old[name], wanted[name], new.drain_timeout)
        self.carrier_configs.clear()
        self.carrier_configs.update(wanted)
        self.config = new
        router = Router(new.carriers, new.routing)
        self.consent.reconfigure(new, router)
        self.intake.reconfigure(new, router)
        self.failover.reconfigure(new, router)
        await self.failover.load_ported_file()
        changed = self.tenants.reconfigure(new)
        self.events.mo.configure(new.tenants, new.routing.country_code)
        if changed:
            log.warning(
                "reload_partial",
                note="tenants added or removed need a restart; limits of the others applied",
                tenants=changed,
            )
        self.health.set_policy(new.metrics.ready_policy)
        self.health.set_carriers(wanted)
        for name, carrier_config in wanted.items():
            if name not in self.carriers:
                self.metrics.init_carrier(name, carrier_config.sessions, carrier_config.tps)
                await self._add_carrier(carrier_config)
        self.telemetry.config_reload(ok=True)
        log.info("reloaded", carriers=list(wanted))
        notify.ready("reloaded")
        return True

    async def _reconfigure_carrier(
        self, old: CarrierConfig, new: CarrierConfig, drain_timeout: float
    ) -> None:
        """Apply one carrier's changed settings: a change to what identifies its binds
        drains and rebinds it (re-added by :meth:`reload`); otherwise the running carrier
        takes the rest live and grows or shrinks ``sessions`` one bind at a time."""
        change = diff(old, new)
        if change.rebind:
            log.info("carrier_reconfigured", carrier=new.name, rebind=change.rebind)
            await self._remove_carrier(new.name, drain_timeout)
            return
        carrier = self.carriers[new.name]
        carrier.reconfigure(replace(new, sessions=old.sessions))
        if change.sessions:
            await carrier.resize(new.sessions, drain_timeout)
            for slot in range(new.sessions, old.sessions):  # binds gone: no window in use
                self.telemetry.window_in_use(new.name, slot, 0)
        self.metrics.init_carrier(new.name, new.sessions, new.tps)
        how: dict[str, Any] = {"live": change.live}
        if change.sessions:
            how["sessions"] = f"{change.sessions:+d}"
        log.info("carrier_reconfigured", carrier=new.name, **how)


def events_client_id(mqtt: MqttConfig) -> str:
    """The client id of the outbox's connection: the gateway's, with ``-events`` (a
    tenant's connection adds ``.<tenant>``, so the two never meet)."""
    return f"{mqtt.client_id}-events"


def log_warnings(config: Config) -> None:
    """What the config parser found unwise (e.g. a password file others can read)."""
    for warning in config.warnings:
        log.warning("config_warning", warning=warning)


def run_gateway(config: Config, *, config_path: str | None = None) -> int:
    """Set up logging and the event loop (uvloop when installed) and run until stopped."""
    setup_logging(config.log)
    log_warnings(config)
    register_secret(config.mqtt.password)
    for carrier_config in config.carriers:
        register_secret(carrier_config.password)
    for url in (config.store.dsn, config.cluster.redis):  # URLs that may carry a password
        register_secret(url)
        if url is not None:
            register_secret(urlsplit(url.reveal()).password)
    runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    try:
        import uvloop

        def runner(coro: Coroutine[Any, Any, int]) -> int:
            return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass

    async def main() -> int:
        try:
            gateway = Gateway(config, config_path=config_path)
        except GmqttChanged as exc:  # an upgrade broke what the flow control relies on
            log.error("gmqtt_incompatible", error=str(exc))
            return 1
        collect_seldom()
        return await gateway.run()

    return runner(main())
