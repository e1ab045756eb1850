"""Drivers for the cluster, chosen by measurement: asyncpg vs psycopg 3 (async) on the
PostgreSQL store's hot statements, and redis-py's asyncio client on the rate-limit script.

    .venv/bin/python tests/perf/bench_cluster.py [--jobs 20000] [--durable]

Starts its own PostgreSQL and redis-server (tests/support/servers.py) on free loopback
ports. Every figure is one statement per batch in its own transaction, as the store runs
them: insert N jobs (``unnest`` arrays, ``ON CONFLICT DO NOTHING``), claim N (``FOR UPDATE
SKIP LOCKED``), mark N submitted. Batch size 1 is the round-trip cost; 100 is a busy
gateway. ``--durable`` keeps fsync on (then the disk's flush time dominates every commit).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import psycopg
import redis.asyncio as aioredis

from smppgw.store import OutboxEvent
from smppgw.store.pg import PostgresStore

from support.servers import Postgres, Redis

SCHEMA = """
DROP TABLE IF EXISTS jobs;
CREATE TABLE jobs (
    seq bigserial PRIMARY KEY, job_id text NOT NULL UNIQUE, carrier text NOT NULL,
    lane smallint NOT NULL, state smallint NOT NULL DEFAULT 0, destination text,
    text text, next_attempt double precision NOT NULL DEFAULT 0, owner text,
    message_ids text[]);
CREATE INDEX jobs_queue ON jobs (carrier, lane, seq) WHERE state = 0;
"""
INSERT = (
    "INSERT INTO jobs (job_id, carrier, lane, destination, text)"
    " SELECT * FROM unnest({0}::text[], {1}::text[], {2}::smallint[], {3}::text[], {4}::text[])"
    " ON CONFLICT (job_id) DO NOTHING RETURNING job_id"
)
CLAIM = (
    "WITH c AS (SELECT seq FROM jobs WHERE carrier = {0} AND state = 0 AND next_attempt <= {1}"
    " ORDER BY lane, seq LIMIT {2} FOR UPDATE SKIP LOCKED)"
    " UPDATE jobs j SET state = 1, owner = {3} FROM c WHERE j.seq = c.seq"
    " RETURNING j.job_id, j.lane, j.destination, j.text"
)
SUBMIT = (
    "UPDATE jobs j SET state = 3, message_ids = ARRAY[u.mid] FROM unnest({0}::text[],"
    " {1}::text[]) AS u(id, mid) WHERE j.job_id = u.id AND j.state IN (1, 2)"
)
PG = ("$1", "$2", "$3", "$4", "$5")
PS = ("%s",) * 5

TAKE = """
local tokens = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
local take = math.min(tokens, tonumber(ARGV[2]))
redis.call('SET', KEYS[1], tokens - take, 'PX', 1000)
return take
"""


def columns(start: int, n: int) -> list[list[Any]]:
    ids = [f"order-{i:08d}" for i in range(start, start + n)]
    return [ids, ["viettel"] * n, [i % 3 for i in range(n)], ["84912345678"] * n, ["hi"] * n]


async def timed(total: int, batch: int, step: Callable[[int], Awaitable[None]]) -> float:
    began = time.perf_counter()
    for start in range(0, total, batch):
        await step(start)
    return total / (time.perf_counter() - began)


async def bench_asyncpg(dsn: str, jobs: int, batch: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    await conn.execute(SCHEMA)

    async def insert(start: int) -> None:
        async with conn.transaction():
            await conn.fetch(INSERT.format(*PG), *columns(start, batch))

    async def claim(start: int) -> None:
        async with conn.transaction():
            await conn.fetch(CLAIM.format(*PG), "viettel", time.time(), batch, "gw-a")

    async def submit(start: int) -> None:
        ids = [f"order-{i:08d}" for i in range(start, start + batch)]
        async with conn.transaction():
            await conn.execute(SUBMIT.format(*PG), ids, [f"m{i}" for i in ids])

    out = {
        "insert": await timed(jobs, batch, insert),
        "claim": await timed(jobs, batch, claim),
        "submit": await timed(jobs, batch, submit),
    }
    await conn.close()
    return out


async def bench_psycopg(dsn: str, jobs: int, batch: int) -> dict[str, float]:
    conn = await psycopg.AsyncConnection.connect(dsn, prepare_threshold=0)
    for statement in filter(str.strip, SCHEMA.split(";")):
        await conn.execute(statement)  # type: ignore[arg-type]
    await conn.commit()

    async def insert(start: int) -> None:
        async with conn.transaction():
            await conn.execute(INSERT.format(*PS), columns(start, batch))  # type: ignore[arg-type]

    async def claim(start: int) -> None:
        async with conn.transaction():
            await conn.execute(CLAIM.format(*PS), ("viettel", time.time(), batch, "gw-a"))  # type: ignore[arg-type]

    async def submit(start: int) -> None:
        ids = [f"order-{i:08d}" for i in range(start, start + batch)]
        async with conn.transaction():
            await conn.execute(SUBMIT.format(*PS), (ids, [f"m{i}" for i in ids]))  # type: ignore[arg-type]

    out = {
        "insert": await timed(jobs, batch, insert),
        "claim": await timed(jobs, batch, claim),
        "submit": await timed(jobs, batch, submit),
    }
    await conn.close()
    return out


async def bench_redis(url: str, calls: int) -> dict[str, float]:
    client = aioredis.Redis.from_url(url)
    script = client.register_script(TAKE)
    began = time.perf_counter()
    for _ in range(calls):
        await script(keys=["bench:bucket"], args=[1_000_000, 10])
    per_call = (time.perf_counter() - began) / calls
    await client.aclose()
    return {"calls/s": 1 / per_call, "tokens/s at 10 a call": 10 / per_call}


async def bench_store_pipeline(dsn: str, jobs: int, callers: int) -> dict[str, float]:
    """The PostgreSQL store as the gateway drives it (tests/perf/bench_store.py's
    pipeline): claim in batches, then mark_in_flight + mark_submitted per job from
    ``callers`` concurrent coroutines (merged by the writer into one statement each)."""
    async with PostgresStore(dsn, node="bench") as store:
        for start in range(0, jobs, 5000):
            ids = range(start, min(start + 5000, jobs))
            await store.add_jobs([_stored(i) for i in ids])
        began = time.perf_counter()
        claimed = []
        while batch := await store.claim("viettel", callers, time.time()):
            claimed.extend(batch)
        claim_s = time.perf_counter() - began
        pending = iter(claimed)

        async def submitter() -> None:
            for job in pending:
                await store.mark_in_flight([job.job_id])
                event = OutboxEvent(f"sms/status/{job.job_id}", b'{"status":"submitted"}')
                mid = f"{hash(job.job_id) & 0xFFFFFFFF:08x}"
                await store.mark_submitted(job.job_id, "viettel", [mid], [mid], False, [event])

        began = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(callers)))
        return {"claim": jobs / claim_s, "submitted": jobs / (time.perf_counter() - began)}


def _stored(i: int) -> Any:
    from smppgw.store import StoredJob

    return StoredJob(f"order-{i:08d}", "viettel", i % 3, "84912345678", "Don hang 1984")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--durable", action="store_true")
    args = parser.parse_args()
    pg = Postgres(durable=args.durable).start()
    rd = Redis().start()
    try:
        dsn = pg.create_database("bench")
        for batch in (1, 100):
            total = args.jobs if batch > 1 else min(args.jobs, 3000)
            for name, run in (("asyncpg", bench_asyncpg), ("psycopg", bench_psycopg)):
                figures = await run(dsn, total, batch)
                shown = ", ".join(f"{k} {v:,.0f} jobs/s" for k, v in figures.items())
                print(f"{name:8} batch {batch:3}: {shown}")
        figures = await bench_store_pipeline(pg.create_database("store"), args.jobs, 100)
        shown = ", ".join(f"{k} {v:,.0f} jobs/s" for k, v in figures.items())
        print(f"PostgresStore pipeline (100 concurrent callers): {shown}")
        figures = await bench_redis(rd.url, 5000)
        print("redis-py asyncio Lua:", ", ".join(f"{k} {v:,.0f}" for k, v in figures.items()))
    finally:
        pg.close()
        rd.close()


if __name__ == "__main__":
    asyncio.run(main())
