"""ops/tally.py: metric updates gathered per event-loop turn read the same as direct ones."""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry, Counter, Histogram

from smppgw.ops.tally import Tally


def _metrics() -> tuple[CollectorRegistry, object, object]:
    registry = CollectorRegistry()
    hist = Histogram("h", "h", ["c"], registry=registry, buckets=(0.001, 0.01, 0.1, 1, 5))
    counter = Counter("c", "c", ["c"], registry=registry)
    return registry, hist.labels("x"), counter.labels("x")


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_a_turns_updates_equal_direct_ones_once_the_turn_ends() -> None:
    """Buckets (bounds included: a value equal to a bound is in that bucket), sum, count
    and counters equal what ``observe``/``inc`` one by one give; nothing shows before the
    turn ends."""
    rng = random.Random(13)
    values = [rng.choice((0.001, 0.01, 5.0, 0.0, 9.0, rng.expovariate(20))) for _ in range(5000)]
    direct, h1, c1 = _metrics()
    for value in values:
        h1.observe(value)  # type: ignore[attr-defined]
        c1.inc(2)  # type: ignore[attr-defined]
    batched, h2, c2 = _metrics()
    seen_mid_turn: list[float | None] = []

    async def run() -> None:
        tally = Tally()
        for start in range(0, len(values), 97):
            for value in values[start : start + 97]:
                tally.observe(h2, value)
                tally.inc(c2, 2)
            seen_mid_turn.append(batched.get_sample_value("c_total", {"c": "x"}))
            await asyncio.sleep(0)

    asyncio.run(run())
    assert seen_mid_turn[0] == 0.0  # the first turn's updates were not applied yet
    got, want = _samples(batched), _samples(direct)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key


def test_outside_an_event_loop_updates_apply_at_once() -> None:
    registry, hist, counter = _metrics()
    tally = Tally()
    tally.inc(counter, 3)
    tally.observe(hist, 0.5)
    assert registry.get_sample_value("c_total", {"c": "x"}) == 3
    assert registry.get_sample_value("h_count", {"c": "x"}) == 1
