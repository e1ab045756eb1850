"""The store's writer process (``store.writer: process``, and ``auto``: the child open
beside the thread, the active one switched by the load) lives and dies with its gateway.

* ``kill -9`` of the gateway: the writer process goes with it at once (no orphan holding
  the database), and a restart on the same store finishes every job, none sent twice.
* The writer process killed under a running gateway: every store operation fails, the
  gateway logs ``store_writer_lost`` and exits on its own with 75 (EX_TEMPFAIL, for the
  service manager to restart it), and a restart finishes every job, none sent twice.

``auto`` runs each with a policy that flaps (``SMPPGW_STORE_AUTO``: a switch every tick or
two), so the kills land around switches too: "auto-flap"; ``auto`` alone runs with the
default policy (at this load the thread stays active: the child is killed idle).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from smppgw.bench.procs import children
from smppgw.procs import gone
from smppgw.store.auto import ENV as STORE_AUTO

from reliability.stack import GatewayProc, Observer, SimProc, assert_settled, carrier_entry, job
from support.broker import Mosquitto

JOBS = 300
#: ``SwitchPolicy``: a look every 20 ms; up at 1 operation a commit, down after one look
#: at any size: a switch nearly every look while jobs flow.
FLAP = "0.02,1,1000,1"
WRITERS = pytest.mark.parametrize("writer", ["process", "auto", "auto-flap"])


def gateway(
    directory: Path,
    mosquitto: Mosquitto,
    sim: SimProc,
    writer: str = "process",
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> GatewayProc:
    """A gateway with ``store.writer: process`` (or ``auto``; ``auto-flap``: flapping)."""
    if writer == "auto-flap":
        assert monkeypatch is not None
        monkeypatch.setenv(STORE_AUTO, FLAP)  # before GatewayProc: its child takes os.environ
    gw = GatewayProc(directory, mosquitto, [carrier_entry(sim, tps=200)])
    gw.config["store"]["writer"] = writer.removesuffix("-flap")
    gw.config_path.write_text(yaml.safe_dump(gw.config))
    return gw


def switches(gw: GatewayProc) -> int:
    return gw.log_text().count("store writer switched")


def writer_of(gateway_pid: int, timeout: float = 10.0) -> int:
    """The gateway's one child process: its store writer."""
    deadline = time.monotonic() + timeout
    while True:
        found = children(gateway_pid)
        if found:
            assert len(found) == 1, found
            return found[0]
        assert time.monotonic() < deadline, "the gateway has no writer process"
        time.sleep(0.05)


async def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@WRITERS
async def test_kill9_of_the_gateway_takes_its_writer_process_and_a_restart_recovers(
    tmp_path: Path, mosquitto: Mosquitto, report, writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = SimProc(tmp_path / "sim", receipt_delay=0.2).start()
    gw = gateway(tmp_path / "gw", mosquitto, sim, writer, monkeypatch)
    ids = [f"w-{i:06d}" for i in range(JOBS)]
    try:
        async with Observer(mosquitto) as obs:
            await gw.start()
            writer = writer_of(gw.pid)
            publishing = asyncio.create_task(obs.publish_many(job("w", i) for i in range(JOBS)))
            await obs.wait_for(lambda: len(obs.finals) >= JOBS // 4, 60, "some finals")
            if writer == "auto-flap":
                assert switches(gw) >= 4, "the policy did not flap"
            gw.kill9()
            assert await wait_gone(writer), "the writer process outlived the gateway"
            await gw.start()
            assert writer_of(gw.pid) != writer
            await publishing
            await obs.wait_final(ids, timeout=90)
            await sim.wait_quiet(timeout=60)
            assert await gw.terminate() == 0
            submits = await sim.asubmits()
    finally:
        gw.close()
        sim.stop()
    assert_settled(
        ids,
        obs,
        submits,
        scenario=f"kill -9 of the gateway, writer {writer}",
        report=report,
        store=gw.read_store(),
    )


@WRITERS
async def test_a_killed_writer_process_stops_the_gateway_and_a_restart_recovers(
    tmp_path: Path, mosquitto: Mosquitto, report, writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = SimProc(tmp_path / "sim", receipt_delay=0.2).start()
    gw = gateway(tmp_path / "gw", mosquitto, sim, writer, monkeypatch)
    ids = [f"x-{i:06d}" for i in range(JOBS)]
    try:
        async with Observer(mosquitto) as obs:
            await gw.start()
            publishing = asyncio.create_task(obs.publish_many(job("x", i) for i in range(JOBS)))
            await obs.wait_for(lambda: len(obs.finals) >= JOBS // 4, 60, "some finals")
            if writer == "auto-flap":
                assert switches(gw) >= 4, "the policy did not flap"
            os.kill(writer_of(gw.pid), signal.SIGKILL)
            assert await gw.child.wait(30) == 75
            assert '"store_writer_lost"' in gw.log_text()
            await gw.start()
            await publishing
            await obs.wait_final(ids, timeout=90)
            await sim.wait_quiet(timeout=60)
            assert await gw.terminate() == 0
            submits = await sim.asubmits()
    finally:
        gw.close()
        sim.stop()
    assert_settled(
        ids,
        obs,
        submits,
        scenario=f"writer process killed under the gateway, writer {writer}",
        report=report,
        store=gw.read_store(),
    )
