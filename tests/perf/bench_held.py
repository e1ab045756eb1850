"""Held jobs cost the live path nothing: the same live workload with 0 and 100,000 held.

    .venv/bin/python tests/perf/bench_held.py [--held 100000] [--jobs 20000] [--rounds 3]

The live path is what every job does: ``add_jobs`` (the intake's batch per event-loop
turn), ``claim`` (the feeder), ``mark_submitted`` (the carrier's outcome). It is timed on a
fresh database with no held jobs, then on one with ``--held`` jobs held for ``send_at``
(in the same carriers and lanes, due in an hour), best of ``--rounds``. Also printed: what
the single release timer costs (``next_held``, a due batch read) with that many held, and
the database size. Each store in a temporary directory (on the same disk as /tmp).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import replace

from smppgw.store import Store, StoredJob

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

#: Jobs per ``add_jobs`` call and per claim, as the intake and the feeder do them.
BATCH = 200


def make_job(prefix: str, i: int) -> StoredJob:
    return StoredJob(
        job_id=f"{prefix}-{i:08d}",
        carrier="viettel",
        lane=i % 3,
        destination=f"8498{i:07d}",
        text="Don hang 1984 da duoc giao. Cam on quy khach!",
        expect_reply=600 if i % 10 == 0 else None,
    )


async def fill_held(store: Store, held: int) -> float:
    """Add ``held`` jobs held for an hour; returns seconds taken."""
    until = time.time() + 3600
    started = time.perf_counter()
    for start in range(0, held, 5000):
        jobs = [
            replace(make_job("held", i), held_until=until, hold_reason="send_at", send_at=until)
            for i in range(start, min(start + 5000, held))
        ]
        await store.add_jobs(jobs)
    return time.perf_counter() - started


async def live_path(store: Store, prefix: str, jobs: int) -> float:
    """Seconds for ``jobs`` live jobs through add → claim → mark_submitted."""
    started = time.perf_counter()
    for start in range(0, jobs, BATCH):
        batch = [make_job(prefix, i) for i in range(start, min(start + BATCH, jobs))]
        await store.add_jobs(batch)
        claimed = await store.claim("viettel", BATCH, time.time())
        await asyncio.gather(
            *(
                store.mark_submitted(job.job_id, "viettel", [job.job_id], [job.job_id], False, [])
                for job in claimed
            )
        )
    return time.perf_counter() - started


async def run(held: int, jobs: int, rounds: int) -> None:
    figures: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in (0, held):
            async with Store(f"{tmp}/held-{count}.db") as store:
                fill = await fill_held(store, count)
                best = min([await live_path(store, f"live{r}", jobs) for r in range(rounds)])
                figures[count] = best
                print(
                    f"held={count:>7,}  live path: {jobs / best:>8,.0f} jobs/s "
                    f"({best / jobs * 1e6:.1f} us/job, best of {rounds})"
                    + (f"  [filled in {fill:.1f} s]" if count else "")
                )
                if count:
                    t0 = time.perf_counter()
                    for _ in range(1000):
                        await store.next_held()
                    per_next = (time.perf_counter() - t0) / 1000
                    t0 = time.perf_counter()
                    due = await store.due_held(time.time() + 7200, 500)
                    per_batch = time.perf_counter() - t0
                    print(
                        f"  timer: next_held {per_next * 1e6:.0f} us; a due batch of "
                        f"{len(due)} read in {per_batch * 1e3:.1f} ms; "
                        f"held by reason {store.held_counts()}; "
                        f"db {store.size_bytes() / 2**20:.1f} MiB"
                    )
    change = figures[held] / figures[0] - 1
    print(f"live path with {held:,} held vs none: {change:+.1%} time per job")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    runner = uvloop.run if uvloop is not None else asyncio.run
    runner(run(args.held, args.jobs, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
