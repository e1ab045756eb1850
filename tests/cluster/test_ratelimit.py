"""The carrier's tps shared through a real redis-server by two "gateways" (two clients,
two throttles on one account key, as two processes would have): never more than tps in
any sliding second, at least 95 % of it under a backlog, and Redis killed → the
``tps / live`` fallback, never over, back to the shared rate by itself."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from smppgw.cluster.ratelimit import ClusterThrottle, RedisRates

from support.rates import most_in_second_ending_at
from support.servers import Redis, find_redis


async def backlog(throttle: ClusterThrottle, until: float, sends: list[float]) -> None:
    """A carrier with an endless queue: send whenever the throttle allows, until ``until``."""
    while (now := time.monotonic()) < until:
        wait = throttle.delay(now)
        if wait <= 0.0:
            sends.append(throttle.take(now))
        else:
            await asyncio.sleep(min(wait, 0.05))


async def test_two_gateways_share_the_account_tps(redis_server: Redis) -> None:
    tps = 50.0
    key = f"acct-{uuid.uuid4().hex[:8]}"
    rates = [RedisRates(redis_server.url, live=lambda: 2) for _ in range(2)]
    throttles = [r.throttle(key, tps) for r in rates]
    sends: list[list[float]] = [[], []]
    start = time.monotonic()
    duration = 4.0
    await asyncio.gather(
        *(backlog(t, start + duration, s) for t, s in zip(throttles, sends, strict=True))
    )
    for r in rates:
        await r.close()
    together = sorted(sends[0] + sends[1])
    assert most_in_second_ending_at(together, 0.0) <= tps
    used = len(together) / (tps * duration)
    print(f"cluster rate used: {used:.1%} of tps")
    assert used >= 0.95, used
    assert len(sends[0]) > 0.3 * len(together) and len(sends[1]) > 0.3 * len(together)
    assert all(t.mode == "cluster" for t in throttles)


async def test_redis_down_falls_back_to_a_share_and_recovers_by_itself() -> None:
    if find_redis() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = Redis().start()
    tps = 40.0
    rates = [RedisRates(server.url, live=lambda: 2) for _ in range(2)]
    throttles = [r.throttle("acct", tps) for r in rates]
    sends: list[float] = []
    try:
        start = time.monotonic()
        run = asyncio.gather(*(backlog(t, start + 8.0, sends) for t in throttles))
        await asyncio.sleep(1.5)
        server.kill()
        killed = time.monotonic()
        await asyncio.sleep(3.0)
        assert all(t.mode == "fallback" for t in throttles)
        server.start()
        back = time.monotonic()
        await run
    finally:
        for r in rates:
            await r.close()
        server.close()
    assert most_in_second_ending_at(sends, 0.0) <= tps
    during = [t for t in sends if killed + 1.2 < t < back]
    assert len(during) >= 0.8 * tps * (back - killed - 1.2)  # the fallback share is used
    assert all(t.mode == "cluster" for t in throttles)  # recovered by itself
    after = [t for t in sends if back + 3.0 < t]
    assert after, "sending on the shared rate again"
