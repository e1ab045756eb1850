"""The writer thread's work per job, without the event loop: every store operation a
delivered job costs (intake, claim, in flight, submitted, receipt, outbox read and ack),
called directly on one connection in group-commit sized transactions, timed as the
thread's CPU per job. What ``smppgw bench e2e`` reports as "other threads", minus the
queue and the futures, so a change to ``store/ops.py`` shows without the e2e's noise.

    .venv/bin/python tests/perf/bench_ops.py [--jobs 20000] [--rounds 5] [--dir /dev/shm]

The store runs as the gateway's default does (``keep_text`` off), receipts are
``DELIVRD`` for single-part jobs, and the events are the gateway's own (``EventFactory``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from smppgw.config import MqttConfig
from smppgw.pipeline.outcomes import EventFactory
from smppgw.store import ops
from smppgw.store.model import OutboxEvent, StoredJob
from smppgw.store.schema import connect
from smppgw.store.writer import Tx

#: Jobs per intake batch, per claim, per outbox round (about what the e2e sees flat out).
BATCH = 100


def make_job(i: int) -> StoredJob:
    return StoredJob(
        job_id=f"j{i}",
        carrier="sim",
        lane=1,
        destination=f"849{i:08d}",
        text="Your code is 123456",
        received_at=time.time(),
    )


class Writer:
    """One connection, each call one transaction (as the writer's group commit makes one
    per batch), the thread CPU of each summed by name."""

    def __init__(self, path: str) -> None:
        self.conn = connect(path, busy_timeout=5.0, synchronous="NORMAL", keep_text=False)
        self.spent: dict[str, float] = {}

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.thread_time()
        self.conn.execute("BEGIN IMMEDIATE")
        # As ``store.batch.run_batch`` does: the batch's events and msgids inserted before COMMIT.
        tx = Tx(self.conn, time.time(), deferred=[], msgids=[])
        result = fn(tx, *args)
        tx.flush()
        self.conn.execute("COMMIT")
        self.spent[name] = self.spent.get(name, 0.0) + time.thread_time() - t0
        return result


def submit_all(tx: Tx, submits: list[tuple[str, str, list[OutboxEvent]]]) -> None:
    for job_id, mid, events in submits:
        ops.mark_submitted(tx, job_id, "sim", [mid], [mid], False, events)


def receipts(tx: Tx, job_ids: list[str], factory: EventFactory) -> None:
    for job_id in job_ids:
        ops.apply_receipt(tx, job_id, 0, "DELIVRD", factory.for_view)


def outbox_round(tx: Tx, after_id: int) -> int:
    """Read what is pending and ack it, as the outbox publisher does; the last id."""
    events = ops.pending_events(tx, 1000, after_id)
    ops.ack_events(tx, [e.event_id for e in events if e.event_id is not None])
    return max((e.event_id or 0 for e in events), default=after_id)


def one_round(path: str, jobs: int) -> tuple[float, dict[str, float]]:
    writer = Writer(path)
    factory = EventFactory(MqttConfig())
    after_id = 0
    start = time.thread_time()
    for first in range(0, jobs, BATCH):
        batch = [make_job(i) for i in range(first, min(first + BATCH, jobs))]
        writer.run("add_jobs", ops.add_jobs, batch)
        claimed = writer.run("claim", ops.claim, "sim", BATCH, time.time())
        ids = [job.job_id for job in claimed]
        writer.run("mark_in_flight", ops.mark_in_flight, ids)
        # Built in the event loop in the gateway: not the writer's time.
        submits = []
        for job_id in ids:
            mid = f"{hash(job_id) & 0xFFFFFFFF:08x}"
            events = factory.status(job_id, "submitted", carrier="sim", parts=1, message_ids=[mid])
            submits.append((job_id, mid, events))
        writer.run("mark_submitted", submit_all, submits)
        writer.run("apply_receipt", receipts, ids, factory)
        after_id = writer.run("outbox", outbox_round, after_id)
    total = time.thread_time() - start
    conn = writer.conn
    left = conn.execute("SELECT count(*) FROM jobs WHERE text IS NOT NULL").fetchone()[0]
    assert left == 0, f"{left} texts left"
    done = conn.execute("SELECT count(*) FROM jobs WHERE status = 'delivered'").fetchone()[0]
    assert done == jobs, f"{done} of {jobs} delivered"
    conn.close()
    return total, writer.spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default="/dev/shm")
    args = parser.parse_args()
    totals: list[float] = []
    steps: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            total, spent = one_round(os.path.join(tmp, "ops.db"), args.jobs)
        totals.append(total)
        for name, seconds in spent.items():
            steps.setdefault(name, []).append(seconds)
    # The writer's figure: the operations' own CPU (building the jobs and the submit
    # events, the event loop's work in the gateway, is left out).
    per_job = sorted(
        1e6 * sum(values[i] for values in steps.values()) / args.jobs for i in range(args.rounds)
    )
    print(
        f"writer CPU per job, {args.rounds} rounds of {args.jobs}: "
        + " / ".join(f"{u:.1f}" for u in per_job)
        + f" µs (median {per_job[len(per_job) // 2]:.1f})"
    )
    for name, values in steps.items():
        med = sorted(values)[len(values) // 2]
        print(f"  {name:15s} {1e6 * med / args.jobs:6.1f} µs/job (median)")


if __name__ == "__main__":
    main()
