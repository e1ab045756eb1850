"""A carrier's ``tps`` shared by every gateway of a cluster, through Redis.

Why not "a token bucket in Redis" alone: the SMSC counts submit_sm in any sliding second,
and tokens taken in a batch and spent at once would bunch. So Redis hands out *send
slots*, not tokens: one Lua script (atomic on the Redis server, on Redis's clock) runs the
same two rules as the per-process :class:`~smppgw.engine.throttle.Throttle` for the whole
account — GCRA spacing ``(1 + margin) / tps`` and an exact sliding-window log of the last
``floor(tps)`` slots, the next slot no earlier than the oldest of them plus ``1 + guard``
seconds — and returns the next ``n`` slot times (a small batch, so the Redis round trip is
paid once per batch, not per message). The gateway sends each slot's message no earlier
than its time and at most ``LATE`` after it, or drops the slot unused; the guard covers
that lateness, the Redis↔gateway clock error (half a round trip) and the SMSC's jitter, so
no second at the SMSC holds more than ``tps`` from the whole cluster, and a backlog runs at
``tps / (1 + guard)`` (~98 %).

Redis down: each gateway falls back to its own throttle at ``tps / live`` (``live``:
gateways with a fresh lease in the store), after a pause of ``1 + guard`` s (slots already
handed out may still be in use by others); it probes Redis every ``PROBE`` s. When Redis is
back it keeps the fallback cap as well as the slots for ``RECOVERY_GRACE`` s, the time the
others need to notice, so the switch back never overlaps a cluster rate with fallback
rates. Never over, and it recovers by itself.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from smppgw.engine.throttle import MARGIN, Throttle
from smppgw.ops.logs import get_logger

log = get_logger("smppgw.cluster")

#: Seconds beyond one second between a slot and the floor(tps)-th slot before it: our
#: lateness (``LATE``), the Redis clock error and the send→SMSC jitter (several
#: processes on a busy machine). An ESME_RTHROTTLED the slots should have prevented
#: widens this gateway's guard by ``GUARD_STEP`` up to ``GUARD_LIMIT``.
GUARD = 0.025
GUARD_STEP = 0.005
GUARD_LIMIT = 0.050
#: Longest a slot may be used after its time (else dropped unused).
LATE = 0.008
#: Slots are granted at most this far ahead of Redis's now.
HORIZON = 0.25
#: Ask for more slots when fewer than this many seconds of them are left.
LOOKAHEAD = 0.1
#: Most slots per script call.
MAX_BATCH = 50
#: Fallback: how often to try Redis again; how long to keep the fallback cap once back.
PROBE = 0.5
RECOVERY_GRACE = 2.0
#: Redis command and connect timeout (a slow Redis must not stall a carrier).
TIMEOUT = 0.5
#: While waiting for slots the dispatcher looks again after this long.
REFILL_WAIT = 0.005

#: KEYS[1] the account's window log (a list of slot times, oldest first), KEYS[2] its
#: next theoretical arrival time; ARGV n, interval, window_limit, guard, horizon.
#: Returns {redis_now, slot, slot, ...} as strings (Lua numbers would be truncated).
SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local guard = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {string.format('%.6f', now)}
for i = 1, n do
  local slot = math.max(now, tat)
  if redis.call('LLEN', KEYS[1]) >= limit then
    slot = math.max(slot, tonumber(redis.call('LINDEX', KEYS[1], 0)) + 1 + guard)
  end
  if slot > now + horizon then break end
  out[#out + 1] = string.format('%.6f', slot)
  tat = slot + interval
  redis.call('RPUSH', KEYS[1], string.format('%.6f', slot))
  if redis.call('LLEN', KEYS[1]) > limit then redis.call('LPOP', KEYS[1]) end
end
redis.call('SET', KEYS[2], string.format('%.6f', tat), 'EX', 60)
redis.call('EXPIRE', KEYS[1], 60)
return out
"""


class RedisRates:
    """One Redis client and the registered script, shared by a gateway's carriers."""

    def __init__(self, url: str, *, live: Callable[[], int] = lambda: 1) -> None:
        import redis.asyncio as aioredis

        self._client: Any = aioredis.Redis.from_url(
            url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        self._script: Any = self._client.register_script(SCRIPT)
        #: Gateways with a fresh lease (the fallback divides tps by it).
        self.live = live

    def throttle(self, carrier: str, tps: float) -> ClusterThrottle:
        return ClusterThrottle(tps, self, key=f"smppgw:tps:{carrier}")

    async def slots(
        self, key: str, n: int, tps: float, guard: float = GUARD
    ) -> tuple[float, list[float]]:
        """(Redis's now, the next ``n`` or fewer slot times), on Redis's clock."""
        interval = (1.0 + MARGIN) / tps
        limit = max(1, math.floor(tps))
        reply = await self._script(
            keys=[f"{key}:log", f"{key}:tat"], args=[n, interval, limit, guard, HORIZON]
        )
        values = [float(v) for v in reply]
        return values[0], values[1:]

    async def close(self) -> None:
        await self._client.aclose()


class ClusterThrottle(Throttle):
    """:class:`Throttle`'s interface (``delay`` / ``take`` on the dispatcher's synchronous
    path) with the account's slots from Redis; see the module docstring."""

    __slots__ = (
        "_cluster_guard",
        "_fallback_until",
        "_grace_until",
        "_key",
        "_next_probe",
        "_rates",
        "_refill",
        "_slots",
        "_wake",
        "cluster_tps",
        "mode",
        "wasted",
    )

    def __init__(self, tps: float, rates: RedisRates, *, key: str) -> None:
        self.cluster_tps = tps
        super().__init__(tps)
        self._rates = rates
        self._key = key
        #: Granted slot times on our monotonic clock, oldest first.
        self._slots: deque[float] = deque()
        self._refill: asyncio.Task[None] | None = None
        self._wake: Callable[[], None] = lambda: None
        #: "cluster" (Redis slots), "fallback" (tps / live, Redis away), "recovering".
        self.mode = "cluster"
        self._fallback_until = 0.0
        self._grace_until = 0.0
        self._next_probe = 0.0
        #: Slots dropped unused (too late); a measure of lost capacity.
        self.wasted = 0
        self._cluster_guard = GUARD
        # The fallback's own window (tps / live each) must absorb the same send→SMSC
        # jitter as the slots: several gateways' sends meet at the SMSC.
        self._guard = GUARD

    def widen_guard(self) -> float:
        """The SMSC throttled although the slots kept to tps: widen the cluster guard this
        gateway asks for too (and the local one)."""
        self._cluster_guard = min(self._cluster_guard + GUARD_STEP, GUARD_LIMIT)
        super().widen_guard()
        return self._cluster_guard

    def attach(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def set_rate(self, tps: float) -> None:
        self.cluster_tps = tps
        if getattr(self, "mode", "cluster") == "cluster":
            super().set_rate(tps)
        else:
            super().set_rate(self._share())

    def _share(self) -> float:
        return self.cluster_tps / max(1, self._rates.live())

    # -- the dispatcher's synchronous path ----------------------------------------------
    def delay(self, now: float | None = None) -> float:
        if now is None:
            now = self._clock()
        local = super().delay(now)
        if self.mode == "fallback":
            if now >= self._next_probe:
                self._next_probe = now + PROBE
                self._start_refill(0)
            return max(local, self._fallback_until - now)
        slots = self._slots
        while slots and slots[0] + LATE < now:
            slots.popleft()
            self.wasted += 1
        if len(slots) * self.interval < LOOKAHEAD:
            self._start_refill(self._batch())
        if self.mode == "recovering" and now >= self._grace_until:
            self.mode = "cluster"
            super().set_rate(self.cluster_tps)
            local = super().delay(now)
            log.warning("cluster_rate_restored", key=self._key)
        if not slots:
            return max(local, REFILL_WAIT)
        return max(local, slots[0] - now, 0.0)

    def take(self, now: float | None = None) -> float:
        if self.mode != "fallback" and self._slots:
            self._slots.popleft()
        return super().take(now)

    # -- slots from Redis ---------------------------------------------------------------
    def _batch(self) -> int:
        """About LOOKAHEAD seconds of the account's rate, 1..MAX_BATCH."""
        return max(1, min(MAX_BATCH, math.ceil(self.cluster_tps * LOOKAHEAD)))

    def _start_refill(self, n: int) -> None:
        if self._refill is None or self._refill.done():
            self._refill = asyncio.get_running_loop().create_task(self._fetch(n))

    async def _fetch(self, n: int) -> None:
        sent = self._clock()
        try:
            redis_now, slots = await self._rates.slots(
                self._key, n, self.cluster_tps, self._cluster_guard
            )
        except Exception as exc:  # ConnectionError, TimeoutError, a Redis error
            self._enter_fallback(exc)
            return
        received = self._clock()
        if self.mode == "fallback":
            self.mode = "recovering"
            self._grace_until = received + RECOVERY_GRACE
            log.warning("cluster_rate_redis_back", key=self._key, grace=RECOVERY_GRACE)
        # Redis's clock → ours: its reply was computed about mid-way through the trip.
        offset = redis_now - (sent + received) / 2
        self._slots.extend(slot - offset for slot in slots)
        self._wake()

    def _enter_fallback(self, exc: BaseException) -> None:
        now = self._clock()
        if self.mode != "fallback":
            log.warning(
                "cluster_rate_fallback",
                key=self._key,
                error=f"{type(exc).__name__}: {exc}",
                share=round(self._share(), 3),
            )
            # Slots already handed out may still be spent by others: wait them out.
            self._fallback_until = now + 1.0 + self._cluster_guard
        self.mode = "fallback"
        self._slots.clear()
        self._next_probe = now + PROBE
        super().set_rate(self._share())
        self._wake()
