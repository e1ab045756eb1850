"""Liveness and readiness, as the gateway sees them, for /healthz, /readyz and the watchdog.

The HTTP server answering probes runs in its own thread (prometheus-client's), so it must
never touch the event loop's objects. Instead the gateway pushes facts into this small
lock-protected object as they change, and the probe thread only reads it. Liveness is a
heartbeat the event loop refreshes every second: a loop blocked by a stuck callback stops
refreshing it, and /healthz (and the systemd watchdog) notice within ``stale_after`` seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from smppgw.config.model import ReadyPolicy


@dataclass(frozen=True, slots=True)
class Verdict:
    """A probe's answer: ``ok`` and, when not ok, why, in words an on-call engineer reads."""

    ok: bool
    reasons: tuple[str, ...]
    details: dict[str, object]


class HealthState:
    """Thread-safe facts about the running gateway, written by the loop, read by probes."""

    def __init__(
        self,
        *,
        stale_after: float = 5.0,
        policy: ReadyPolicy | str = ReadyPolicy.ALL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.stale_after = stale_after
        self._policy = ReadyPolicy(policy)
        self._heartbeat = clock()
        self._mqtt_connected = False
        self._binds: dict[str, int] = {}
        self._problems: dict[str, str] = {}
        self._draining = False
        self._paused: set[str] = set()
        #: Carriers down long enough that their jobs go to the next carrier (failover).
        self._failing_over: set[str] = set()

    # --- written by the gateway -------------------------------------------------------

    def beat(self) -> None:
        """Record that the event loop ran a callback just now."""
        now = self._clock()
        with self._lock:
            self._heartbeat = now

    def set_mqtt_connected(self, connected: bool) -> None:
        with self._lock:
            self._mqtt_connected = connected

    def set_carriers(self, names: Iterable[str]) -> None:
        """Declare the configured carriers (again after a reload); binds of new ones are 0."""
        with self._lock:
            self._binds = {name: self._binds.get(name, 0) for name in names}

    def set_binds(self, carrier: str, up: int) -> None:
        """Number of binds of ``carrier`` currently bound (able to submit or receive)."""
        with self._lock:
            self._binds[carrier] = up

    def set_paused(self, carrier: str, paused: bool) -> None:
        """An operator paused (or resumed) ``carrier``: shown apart from broken binds, and
        not a reason to be unready (its binds stay up, its jobs queue in the store)."""
        with self._lock:
            if paused:
                self._paused.add(carrier)
            else:
                self._paused.discard(carrier)

    def set_failing_over(self, carrier: str, failing_over: bool) -> None:
        """``carrier`` has had no bind for its ``failover_after``: its jobs go to other
        carriers (shown in /readyz's details next to ``paused``)."""
        with self._lock:
            if failing_over:
                self._failing_over.add(carrier)
            else:
                self._failing_over.discard(carrier)

    def set_policy(self, policy: ReadyPolicy | str) -> None:
        with self._lock:
            self._policy = ReadyPolicy(policy)

    def set_problem(self, component: str, reason: str | None) -> None:
        """Mark a component (e.g. ``"store"``) not ready with ``reason``, or clear it (None)."""
        with self._lock:
            if reason is None:
                self._problems.pop(component, None)
            else:
                self._problems[component] = reason

    def set_draining(self, draining: bool = True) -> None:
        """Shutting down: not ready any more, so load balancers and the demo stop sending."""
        with self._lock:
            self._draining = draining

    # --- read by probes -----------------------------------------------------------------

    def heartbeat_age(self) -> float:
        with self._lock:
            return max(0.0, self._clock() - self._heartbeat)

    def liveness(self) -> Verdict:
        age = self.heartbeat_age()
        details: dict[str, object] = {"heartbeat_age_seconds": round(age, 3)}
        if age > self.stale_after:
            return Verdict(False, (f"event loop: no heartbeat for {age:.1f} s",), details)
        return Verdict(True, (), details)

    def alive(self) -> bool:
        """For the watchdog: ping systemd only while this is true."""
        return self.liveness().ok

    def readiness(self) -> Verdict:
        live = self.liveness()
        with self._lock:
            binds = dict(self._binds)
            mqtt = self._mqtt_connected
            problems = dict(self._problems)
            policy = self._policy
            draining = self._draining
            paused = sorted(self._paused)
            failing_over = sorted(self._failing_over)
        reasons = list(live.reasons)
        if draining:
            reasons.append("gateway: shutting down")
        if not mqtt:
            reasons.append("mqtt: not connected")
        if policy is ReadyPolicy.ALL:
            reasons.extend(f"carrier {name}: no bind up" for name, up in binds.items() if up <= 0)
        elif policy is ReadyPolicy.ANY and binds and not any(up > 0 for up in binds.values()):
            reasons.append("carriers: no bind up on any carrier")
        reasons.extend(f"{component}: {why}" for component, why in sorted(problems.items()))
        details: dict[str, object] = {
            "mqtt_connected": mqtt,
            "binds": binds,
            "policy": policy.value,
            "paused": paused,
            "failing_over": failing_over,
        }
        return Verdict(not reasons, tuple(reasons), details)


async def run_heartbeat(health: HealthState, interval: float = 1.0) -> None:
    """Refresh the heartbeat from the event loop until cancelled (run it as a task)."""
    while True:
        health.beat()
        await asyncio.sleep(interval)
