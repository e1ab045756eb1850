"""Scenario 4: the store cannot write (disk full, database locked by another process).

While it cannot commit, intake must not acknowledge a job (no PUBACK: the broker keeps it
and delivers it again), receipts must not be answered (the SMSC resends them), outcomes are
retried; nothing already committed is lost, and everything resumes when the store can
write again.

Disk full uses a small tmpfs (needs root to mount; skipped otherwise). The lock uses a
second process holding ``BEGIN EXCLUSIVE`` on the database, which works anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability.conftest import size
from reliability.stack import GatewayProc, Observer, SimProc, assert_settled, carrier_entry, job
from support.broker import Mosquitto


@contextlib.contextmanager
def tmpfs(path: Path, megabytes: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}M", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Make a file that takes every free byte of the filesystem; returns it (delete it to
    free the space). The bulk is one ``posix_fallocate`` (milliseconds, where writing
    32 MiB took up to a second on a loaded machine: see :func:`fill_with_wal_empty`), then
    writes halving down to the last octet the filesystem will take."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        free = os.statvfs(directory)
        with contextlib.suppress(OSError):
            os.posix_fallocate(fd, 0, free.f_bavail * free.f_frsize)
        os.lseek(fd, 0, os.SEEK_END)
        block = 1 << 20
        while block:
            try:
                os.write(fd, b"\0" * block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                block //= 2  # down to the last octet the filesystem will take
    finally:
        os.close(fd)
    return filler


async def _flow(
    tmp_path: Path,
    broker: Mosquitto,
    report,
    *,
    scenario: str,
    prefix: str,
    store_path: Path | None,
    fault_on,
    fault_off,
    fault_seconds: float,
) -> None:
    n_before = size(300, 3000)
    n_during = size(200, 2000)
    sim = SimProc(tmp_path / "sim", receipt_delay=0.5).start()
    gw = GatewayProc(tmp_path / "gw", broker, [carrier_entry(sim, tps=200)], store_path=store_path)
    ids = [f"{prefix}-{i:06d}" for i in range(n_before + n_during)]
    try:
        async with Observer(broker) as obs:
            await gw.start()
            await obs.publish_many(job(prefix, i) for i in range(n_before))
            await obs.wait_for(lambda: len(obs.statuses) > n_before // 3, 30, "first events")
            # Counted from when the store cannot commit any more: jobs of the first batch
            # still arriving while the fault is being set up are not "taken while failing".
            fault = await fault_on()
            received_before = gw.metric("smppgw_jobs_received_total")
            started = time.monotonic()
            await obs.publish_many(job(prefix, i) for i in range(n_before, n_before + n_during))
            during = ids[n_before:]
            await asyncio.sleep(max(0.0, fault_seconds - (time.monotonic() - started)))
            # While the store cannot commit, none of the new jobs was acknowledged as taken:
            # not counted as received and no event for any of them.
            received_during = gw.metric("smppgw_jobs_received_total") - received_before
            events_during = sum(1 for j in during if j in obs.statuses)
            store_errors = gw.metric("smppgw_store_errors_total")
            alive_during = gw.alive
            await fault_off(fault)
            recovered_from = time.monotonic()
            await obs.wait_final(ids, timeout=size(90, 240))
            recovery = time.monotonic() - recovered_from
            await sim.wait_quiet(timeout=60)
            assert await gw.terminate() == 0
            await asyncio.sleep(0.3)
            submits = await sim.asubmits()
            stats = await sim.astats()
    finally:
        gw.close()
        sim.stop()
    assert_settled(
        ids,
        obs,
        submits,
        scenario=scenario,
        report=report,
        store=gw.read_store(),
        allow_unknown=False,
        delivered=len(ids),
        seconds_faulty=fault_seconds,
        jobs_received_while_faulty=received_during,
        events_while_faulty=events_during,
        store_errors=store_errors,
        seconds_to_recover=round(recovery, 1),
        receipts_redelivered_by_smsc=stats["receipts_sent"] - stats["receipts_acknowledged"],
    )
    assert alive_during
    assert received_during <= n_during * 0.05, "jobs were taken while the store was failing"


def fill_with_wal_empty(database: Path, attempts: int = 5) -> Path:
    """Fill the filesystem of ``database`` (in WAL mode, open in a running gateway) so that
    no commit can succeed any more; returns the filler (delete it to free the space).

    A full disk alone is not enough: SQLite writes a commit into the WAL file, and once a
    checkpoint has copied the WAL back (automatically when it reaches
    ``wal_autocheckpoint`` pages, 1000) the next commit restarts the WAL from its start,
    into space the file already has. So the WAL is truncated first, and the gateway goes on
    committing while the disk fills: if the WAL reached the checkpoint size meanwhile (a
    fill of 0.9 s did, letting all 200 jobs of the fault in), the disk is freed and the
    fault set up again. Below that size no checkpoint runs, and every commit needs a new
    page of WAL that the full disk refuses."""
    for _ in range(attempts):
        conn = sqlite3.connect(database, timeout=10)
        try:
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            limit = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            page = conn.execute("PRAGMA page_size").fetchone()[0]
        finally:
            conn.close()
        if busy:
            continue
        filler = fill(database.parent)
        wal = database.with_name(database.name + "-wal")
        frames = (wal.stat().st_size - 32) // (page + 24) if wal.exists() else 0
        if frames < limit:
            return filler
        filler.unlink()
    raise AssertionError(f"the WAL reached its checkpoint size while filling, {attempts} times")


async def test_disk_full_stops_intake_and_recovers(
    tmp_path: Path, mosquitto: Mosquitto, report
) -> None:
    with tmpfs(tmp_path / "disk", 32) as disk:

        async def full() -> Path:
            return await asyncio.to_thread(fill_with_wal_empty, disk / "gw.db")

        async def space(filler: Path) -> None:
            filler.unlink()

        await _flow(
            tmp_path,
            mosquitto,
            report,
            scenario="store disk full",
            prefix="f",
            store_path=disk / "gw.db",
            fault_on=full,
            fault_off=space,
            fault_seconds=size(4.0, 30.0),
        )


_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


async def test_database_locked_by_another_process_stops_intake_and_recovers(
    tmp_path: Path, mosquitto: Mosquitto, report
) -> None:
    store_path = tmp_path / "gw" / "gw.db"

    async def lock() -> subprocess.Popen[bytes]:
        locker = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, str(store_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert locker.stdout is not None
        line = await asyncio.to_thread(locker.stdout.readline)
        assert line.strip() == b"locked"
        return locker

    async def unlock(locker: subprocess.Popen[bytes]) -> None:
        assert locker.stdin is not None
        locker.stdin.write(b"\n")
        locker.stdin.flush()
        await asyncio.to_thread(locker.wait, 10)

    await _flow(
        tmp_path,
        mosquitto,
        report,
        scenario="store locked by another process (BEGIN EXCLUSIVE)",
        prefix="l",
        store_path=store_path,
        fault_on=lock,
        fault_off=unlock,
        # Longer than the writer's busy_timeout (5 s), so commits fail, not just wait.
        fault_seconds=size(8.0, 30.0),
    )
