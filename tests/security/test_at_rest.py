"""Finding 7: data at rest.

* The store's files (database, ``-wal``, ``-shm``) are 0600 under umask 022, outside
  systemd's ``UMask=0077``: created so, and tightened when an older release left them 0644.
* An OTP does not stay on disk for ``retention``: once a job is submitted or final its
  text is gone from the database file (read back with sqlite3 and as raw bytes), unless
  ``store.keep_text: true``.
* A ``password_file`` that group or others can read is named, with its mode, in
  ``smppgw check-config`` and in the gateway's log at start; its content never is.

Real mosquitto, ``smppgw sim`` and ``smppgw run`` as processes, real SQLite files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from smppgw.store import Store

from reliability.stack import (
    CARRIER_PASSWORD,
    GatewayProc,
    Observer,
    SimProc,
    carrier_entry,
)
from support.broker import Mosquitto

STORE_FILES = ("gw.db", "gw.db-wal", "gw.db-shm")


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(directory: Path) -> dict[str, str]:
    return {
        name: oct(stat.S_IMODE((directory / name).stat().st_mode))
        for name in STORE_FILES
        if (directory / name).exists()
    }


async def test_store_files_are_0600_under_umask_022(tmp_path: Path) -> None:
    with umask(0o022):
        async with Store(str(tmp_path / "gw.db")) as store:
            await store.run(lambda conn: conn.execute("CREATE TABLE t (x)"))
            seen = modes(tmp_path)
    print(f"new store under umask 022: {seen}")
    assert set(seen) == set(STORE_FILES), seen  # -wal and -shm exist while it is open
    assert set(seen.values()) == {"0o600"}, seen


async def test_an_existing_world_readable_store_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    with umask(0o022):
        conn = sqlite3.connect(path)  # what an older release (or sqlite3 by hand) leaves
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE leftover (x)")
        conn.commit()
        before = modes(tmp_path)
        async with Store(str(path)) as store:
            await store.run(lambda c: c.execute("SELECT 1"))
            after = modes(tmp_path)
        conn.close()
    print(f"before: {before} after: {after}")
    assert before["gw.db"] == "0o644"
    assert set(after.values()) == {"0o600"}, after


# ----------------------------------------------------------------------------- texts


async def test_every_path_to_submitted_or_final_blanks_the_text(tmp_path: Path) -> None:
    """Store level, every way a job leaves the queue: finish (rejected, failed, expired),
    submitted (with and without receipts), delivered by a receipt, unknown outcome at
    recovery. A queued job keeps its text: it still has to be sent."""
    from smppgw.store import StoredJob

    def stored(job_id: str) -> StoredJob:
        return StoredJob(job_id, "viettel", 1, "84912345678", text=f"OTP of {job_id}")

    ids = ["rejected", "failed", "expired", "submitted", "final", "delivered", "unknown", "queued"]
    path = tmp_path / "gw.db"
    async with Store(str(path)) as store:
        await store.add_jobs([stored(j) for j in ids])
        await store.claim("viettel", len(ids) - 1, 1e12)
        for status in ("rejected", "failed", "expired"):
            assert await store.finish(status, status, [], code="x")
        await store.mark_submitted("submitted", "viettel", ["1"], ["1"], False, [])
        await store.mark_submitted("final", "viettel", ["2"], ["2"], True, [])
        await store.mark_submitted("delivered", "viettel", ["3"], ["3"], False, [])
        assert await store.apply_receipt("delivered", 0, "DELIVRD", lambda v, s: []) == (
            "delivered"
        )
        await store.mark_in_flight(["unknown"])
    async with Store(str(path)) as store:  # a restart: in-flight becomes unknown_outcome
        report = await store.recover(lambda carrier: False, lambda v, s: [])
        assert report.failed == ["unknown"]
    texts = _texts(path)
    print(f"texts left: {texts}")
    assert texts == {**dict.fromkeys(ids[:-1]), "queued": "OTP of queued"}


def _texts(db: Path) -> dict[str, str | None]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT job_id, text FROM jobs").fetchall())
    finally:
        conn.close()


def _raw(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


async def _run_jobs(
    tmp_path: Path, mosquitto: Mosquitto, store: dict[str, Any]
) -> tuple[GatewayProc, dict[str, str]]:
    """Send one job that ends delivered (receipt) and one that ends submitted (dlr off);
    return the stopped gateway and job id → OTP text."""
    sim = SimProc(tmp_path / "sim", receipt_delay=0.2).start()
    otps = {"otp-delivered": "Your code is 731942", "otp-nodlr": "Your code is 508117"}
    gw = GatewayProc(tmp_path / "gw", mosquitto, [carrier_entry(sim)], store=store)
    try:
        async with Observer(mosquitto, submitted_is_final=True) as obs:
            with umask(0o022):
                await gw.start()
            await obs.publish(
                {"id": "otp-delivered", "to": "0981234567", "text": otps["otp-delivered"]}
            )
            await obs.publish(
                {"id": "otp-nodlr", "to": "0981234567", "text": otps["otp-nodlr"], "dlr": False}
            )
            await obs.wait_for(
                lambda: (
                    "delivered" in obs.final_of("otp-delivered")
                    and obs.final_of("otp-nodlr") == {"submitted"}
                ),
                30,
                "delivered and submitted (dlr off)",
            )
            running = modes(gw.dir)
            assert await gw.terminate() == 0
    finally:
        gw.close()
        sim.stop()
    print(f"gateway store files under umask 022: {running}")
    assert set(running.values()) == {"0o600"}, running
    return gw, otps


async def test_a_final_jobs_text_is_gone_from_the_store(tmp_path: Path, mosquitto: Mosquitto):
    gw, otps = await _run_jobs(tmp_path, mosquitto, {"path": str(tmp_path / "gw" / "gw.db")})
    texts = _texts(gw.store_path)
    raw = _raw(gw.store_path)
    print(f"texts in the store after the jobs: {texts}; store bytes: {len(raw)}")
    assert texts == {job_id: None for job_id in otps}
    for otp in otps.values():
        assert otp.encode() not in raw, f"{otp!r} still in the store files"


async def test_keep_text_true_keeps_it(tmp_path: Path, mosquitto: Mosquitto) -> None:
    gw, otps = await _run_jobs(
        tmp_path, mosquitto, {"path": str(tmp_path / "gw" / "gw.db"), "keep_text": True}
    )
    assert _texts(gw.store_path) == otps


# ----------------------------------------------------------------------------- secrets


def _config(tmp_path: Path, password_file: Path, port: int = 2775) -> Path:
    path = tmp_path / "smppgw.yaml"
    carrier = {
        "name": "viettel",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "shop",
        "password_file": str(password_file),
        "prefixes": ["8498"],
    }
    path.write_text(yaml.safe_dump({"carriers": [carrier], "store": {"path": "gw.db"}}))
    return path


def _check_config(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smppgw", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_warns_about_a_password_file_others_can_read(tmp_path: Path) -> None:
    secret = tmp_path / "viettel.pw"
    secret.write_text(CARRIER_PASSWORD + "\n")
    secret.chmod(0o644)
    result = _check_config(_config(tmp_path, secret))
    output = result.stdout + result.stderr
    print(result.stderr)
    assert result.returncode == 0, output
    assert f"carriers[0].password_file: {secret} is readable by group or others" in result.stderr
    assert "mode 0644" in result.stderr
    assert CARRIER_PASSWORD not in output

    secret.chmod(0o600)
    quiet = _check_config(_config(tmp_path, secret))
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr


async def test_the_gateway_logs_the_warning_at_start(tmp_path: Path, mosquitto: Mosquitto):
    sim = SimProc(tmp_path / "sim").start()
    secret = tmp_path / "viettel.pw"
    secret.write_text(CARRIER_PASSWORD + "\n")
    secret.chmod(0o640)
    entry = carrier_entry(sim)
    entry.pop("password")
    entry["password_file"] = str(secret)
    gw = GatewayProc(tmp_path / "gw", mosquitto, [entry])
    try:
        await gw.start()
        await asyncio.sleep(0.2)
    finally:
        gw.close()
        sim.stop()
    log = gw.log_text()
    lines = [line for line in log.splitlines() if "config_warning" in line]
    print(lines)
    assert len(lines) == 1 and str(secret) in lines[0] and "mode 0640" in lines[0]
    assert CARRIER_PASSWORD not in log
