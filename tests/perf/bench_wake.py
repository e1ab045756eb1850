"""What a wake-up costs on this machine: the same small unit of work timed as the CPU of
the thread doing it, run back to back, after a sleep, and after blocking in ``recv`` on a
socket another process writes to (how the gateway's event loop and its writer process
wait for each other).

Why it exists: at half load the gateway's CPU a job is ~3× its flat-out figure, and the
question is how much of that is the host's price of going idle and waking up again (a
halted vCPU, cold caches after other processes ran) rather than the gateway's own work.
The difference between the back-to-back and the woken figures is that price, per wake-up.
docs/performance.md, issue 13 step 130.

    .venv/bin/python tests/perf/bench_wake.py [--units 3000] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable

#: The gaps tried between two units, in seconds (besides none: back to back).
GAPS = (0.0002, 0.001, 0.002)


def sqlite_unit(path: str) -> Callable[[], None]:
    """A 4-row transaction on a WAL database, as the writer's smallest batches are."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
    body = "x" * 50

    def unit() -> None:
        conn.execute("BEGIN")
        for _ in range(4):
            conn.execute("INSERT INTO t (body) VALUES (?)", (body,))
        conn.execute("COMMIT")

    return unit


def python_unit() -> None:
    """Interpreted work only: a small dict and string churn, ~60 µs hot on a 2.45 GHz EPYC."""
    rows = [{"id": i, "to": f"8490{i:07d}", "state": i % 5} for i in range(60)]
    "".join(str(row["to"]) for row in rows if row["state"] != 3)


def after_sleep(unit: Callable[[], None], gap: float, units: int) -> float:
    """µs of this thread's CPU a unit, sleeping ``gap`` between units."""
    started = time.thread_time()
    for _ in range(units):
        unit()
        if gap:
            time.sleep(gap)
    return (time.thread_time() - started) / units * 1e6


def after_recv(unit: Callable[[], None], gap: float, units: int) -> float:
    """µs of CPU a unit (the ``recv`` included), each unit started by a byte another
    process sends ``gap`` seconds after the previous one."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the sender: a byte every gap seconds, then exit
        ours.close()
        for _ in range(units):
            time.sleep(gap)
            theirs.send(b"x")
        os._exit(0)
    theirs.close()
    started = time.thread_time()
    for _ in range(units):
        ours.recv(1)
        unit()
    spent = time.thread_time() - started
    os.waitpid(pid, 0)
    ours.close()
    return spent / units * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--dir", default=None, help="where the SQLite file goes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        units: dict[str, Callable[[], None]] = {
            "sqlite, 4 inserts + commit": sqlite_unit(os.path.join(tmp, "wake.db")),
            "python only": python_unit,
        }
        for name, unit in units.items():
            hot = after_sleep(unit, 0.0, args.units)
            print(f"{name}: back to back {hot:.1f} µs a unit")
            for gap in GAPS:
                slept = after_sleep(unit, gap, args.units)
                woken = after_recv(unit, gap, args.units)
                print(
                    f"  {gap * 1e3:.1f} ms apart: after a sleep {slept:.1f} µs "
                    f"(+{slept - hot:.1f}), woken by another process {woken:.1f} µs "
                    f"(+{woken - hot:.1f})"
                )


if __name__ == "__main__":
    main()
