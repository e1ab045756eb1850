"""Store throughput: group commit under concurrent callers, claim, mark_submitted.

    .venv/bin/python tests/perf/bench_store.py [--jobs 10000] [--callers 500]

Each figure uses a fresh database in a temporary directory (on the same disk as /tmp).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

from smppgw.store import OutboxEvent, Store, StoredJob, StoreStats

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


def make_job(i: int, carrier: str = "viettel") -> StoredJob:
    return StoredJob(
        job_id=f"order-{i:08d}",
        carrier=carrier,
        lane=i % 3,
        destination=f"8491{i:07d}",
        text="Don hang 1984 da duoc giao. Cam on quy khach!",
        response_topic="app/replies",
        correlation_data=b"corr-%d" % i,
    )


def _commit_figures(
    before: StoreStats, after: StoreStats, jobs: int, elapsed: float
) -> dict[str, float]:
    """Throughput and group-commit batching between two ``Store.stats()`` snapshots."""
    commits = after.commits - before.commits
    ops = after.operations - before.operations
    return {
        "jobs_per_s": jobs / elapsed,
        "commits_per_s": commits / elapsed,
        "mean_batch": ops / max(commits, 1),
        "max_batch": after.max_batch,
        "seconds": elapsed,
    }


async def bench_add(path: str, jobs: int, callers: int, **store_kw: object) -> dict[str, float]:
    """``callers`` coroutines each adding single jobs until ``jobs`` are in."""
    async with Store(path, **store_kw) as store:  # type: ignore[arg-type]
        before = store.stats()
        queue = iter(range(jobs))

        async def caller() -> None:
            for i in queue:
                added = await store.add_jobs([make_job(i)])
                assert added == [True]

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.perf_counter() - start
        after = store.stats()
    return _commit_figures(before, after, jobs, elapsed)


async def bench_stream(path: str, jobs: int, window: int, **store_kw: object) -> dict[str, float]:
    """Jobs arriving one per event-loop turn (as MQTT messages do), each handled by its own
    task, at most ``window`` unacknowledged (the broker's Receive Maximum)."""
    async with Store(path, **store_kw) as store:  # type: ignore[arg-type]
        before = store.stats()
        slots = asyncio.Semaphore(window)

        async def handle(i: int) -> None:
            try:
                assert await store.add_jobs([make_job(i)]) == [True]
            finally:
                slots.release()

        tasks = []
        start = time.perf_counter()
        for i in range(jobs):
            await slots.acquire()
            tasks.append(asyncio.create_task(handle(i)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        after = store.stats()
    return _commit_figures(before, after, jobs, elapsed)


async def bench_paced(path: str, jobs: int, rate: float, **store_kw: object) -> dict[str, float]:
    """Jobs arriving at a steady ``rate`` per second, each handled by its own task: the
    CPU spent per job and the latency a publisher sees (time to PUBACK)."""
    async with Store(path, **store_kw) as store:  # type: ignore[arg-type]
        before = store.stats()
        latencies: list[float] = []

        async def handle(i: int) -> None:
            t0 = time.perf_counter()
            assert await store.add_jobs([make_job(i)]) == [True]
            latencies.append(time.perf_counter() - t0)

        tasks = []
        cpu0, start = time.process_time(), time.perf_counter()
        tick = 0.001  # release a burst of rate/1000 jobs every millisecond
        per_tick = rate * tick
        due = 0.0
        i = 0
        while i < jobs:
            due += per_tick
            while i < jobs and i < due:
                tasks.append(asyncio.create_task(handle(i)))
                i += 1
            next_tick = start + (due / rate)
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        after = store.stats()
    commits = after.commits - before.commits
    ops = after.operations - before.operations
    latencies.sort()
    return {
        "jobs_per_s": jobs / elapsed,
        "cpu_pct": 100 * cpu / elapsed,
        "cpu_us_per_job": 1e6 * cpu / jobs,
        "commits_per_s": commits / elapsed,
        "mean_batch": ops / max(commits, 1),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


async def bench_pipeline(path: str, jobs: int, batch: int) -> dict[str, float]:
    """Bulk-load, then claim in batches of ``batch``, then mark each job submitted from
    ``batch`` concurrent coroutines (as the carrier's submit_sm_resp handlers would)."""
    async with Store(path) as store:
        for start in range(0, jobs, 5000):
            await store.add_jobs([make_job(i) for i in range(start, min(start + 5000, jobs))])
        claimed: list[StoredJob] = []
        t0 = time.perf_counter()
        while True:
            got = await store.claim("viettel", batch, time.time())
            if not got:
                break
            claimed.extend(got)
        claim_s = time.perf_counter() - t0
        assert len(claimed) == jobs

        pending = iter(claimed)

        async def submitter() -> None:
            for job in pending:
                await store.mark_in_flight([job.job_id])
                mid = f"{hash(job.job_id) & 0xFFFFFFFF:08x}"
                event = OutboxEvent(f"sms/status/{job.job_id}", b'{"status":"submitted"}')
                await store.mark_submitted(job.job_id, "viettel", [mid], [mid], False, [event])

        t0 = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(batch)))
        submit_s = time.perf_counter() - t0
    return {
        "claim_jobs_per_s": jobs / claim_s,
        "submitted_per_s": jobs / submit_s,
    }


async def bench_large(path: str, jobs: int) -> None:
    """A deep backlog: bulk load, reopen (queue depths are counted once at open), then
    claim from the front of the high lane and from behind ``jobs`` rows."""
    async with Store(path) as store:
        t0 = time.perf_counter()
        for start in range(0, jobs, 20_000):
            await store.add_jobs([make_job(i) for i in range(start, min(start + 20_000, jobs))])
        load = time.perf_counter() - t0
        size = store.size_bytes() / 2**20
    t0 = time.perf_counter()
    async with Store(path) as store:
        reopen = time.perf_counter() - t0
        t0 = time.perf_counter()
        claimed = 0
        for _ in range(100):
            claimed += len(await store.claim("viettel", 1000, time.time()))
        claim = time.perf_counter() - t0
    print(
        f"large     {jobs} queued: bulk load {jobs / load:7.0f} jobs/s, {size:5.0f} MiB, "
        f"reopen {reopen * 1000:5.0f} ms, claim 1000 {claim * 10:5.1f} ms each ({claimed} total)"
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        cpus = os.cpu_count()
        print(f"store bench: {args.jobs} jobs, {args.callers} concurrent callers, cpu={cpus}")
        for label, kw in [
            ("default (commit_interval=0)", {}),
            ("commit_interval=0.002", {"commit_interval": 0.002}),
            ("synchronous=FULL", {"synchronous": "FULL"}),
        ]:
            path = os.path.join(tmp, f"add-{len(label)}-{time.monotonic_ns()}.db")
            r = await bench_add(path, args.jobs, args.callers, **kw)
            print(
                f"add_jobs  {label:40s} {r['jobs_per_s']:9.0f} jobs/s  "
                f"{r['commits_per_s']:7.0f} commits/s  mean batch {r['mean_batch']:6.1f}  "
                f"max batch {r['max_batch']:4.0f}"
            )
        for label, kw in [
            ("default (commit_interval=0)", {}),
            ("commit_interval=0.002", {"commit_interval": 0.002}),
            ("synchronous=FULL", {"synchronous": "FULL"}),
            (
                "synchronous=FULL, commit_interval=0.002",
                {"synchronous": "FULL", "commit_interval": 0.002},
            ),
        ]:
            path = os.path.join(tmp, f"stream-{time.monotonic_ns()}.db")
            r = await bench_stream(path, args.jobs, args.callers, **kw)
            print(
                f"streamed  {label:40s} {r['jobs_per_s']:9.0f} jobs/s  "
                f"{r['commits_per_s']:7.0f} commits/s  mean batch {r['mean_batch']:6.1f}  "
                f"max batch {r['max_batch']:4.0f}"
            )
        for rate in (2000, 10000):
            for label, kw in [
                ("default (commit_interval=0)", {}),
                ("commit_interval=0.002", {"commit_interval": 0.002}),
            ]:
                path = os.path.join(tmp, f"paced-{time.monotonic_ns()}.db")
                r = await bench_paced(path, min(args.jobs, rate * 2), rate, **kw)
                print(
                    f"paced {rate:5d}/s {label:31s} {r['jobs_per_s']:7.0f} jobs/s  "
                    f"cpu {r['cpu_pct']:4.0f}% ({r['cpu_us_per_job']:4.0f} us/job)  "
                    f"{r['commits_per_s']:6.0f} commits/s  mean batch {r['mean_batch']:5.1f}  "
                    f"p50 {r['p50_ms']:5.2f} ms  p99 {r['p99_ms']:5.2f} ms"
                )
        path = os.path.join(tmp, "seq.db")
        r = await bench_add(path, min(args.jobs, 5000), 1)
        print(
            f"add_jobs  {'1 sequential caller':34s} {r['jobs_per_s']:9.0f} jobs/s  "
            f"{r['commits_per_s']:7.0f} commits/s  mean batch {r['mean_batch']:6.1f}"
        )
        r = await bench_pipeline(os.path.join(tmp, "pipe.db"), args.jobs, args.batch)
        print(f"claim     batches of {args.batch:<23d} {r['claim_jobs_per_s']:9.0f} jobs/s")
        print(
            f"mark_in_flight + mark_submitted, {args.batch} concurrent "
            f"{r['submitted_per_s']:9.0f} jobs/s"
        )
        if args.large:
            await bench_large(os.path.join(tmp, "large.db"), args.large)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--callers", type=int, default=500)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--dir", default=None, help="directory for the database files")
    parser.add_argument("--large", type=int, default=0, help="also queue this many jobs")
    parser.add_argument("--no-uvloop", action="store_true")
    ns = parser.parse_args()
    if uvloop is not None and not ns.no_uvloop:
        uvloop.install()
    asyncio.run(main(ns))
    sys.exit(0)
