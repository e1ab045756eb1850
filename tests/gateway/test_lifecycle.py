"""Restarts and shutdowns: the broker, the SMSC and the gateway itself go away and come
back while jobs and receipts flow; every job still reaches one final status."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from smppgw.gateway import Gateway
from smppgw.procs import Child
from smppgw.sim.server import Simulator

from gateway.harness import Observer, gateway_config, running, sim_config
from support.broker import Mosquitto


def _final_statuses(obs: Observer, job_id: str) -> set[str]:
    return {e["status"] for e in obs.final(job_id)}


async def test_broker_restart_while_jobs_and_receipts_flow(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    ids = [f"b-{i}" for i in range(120)]
    async with Simulator(sim_config(receipt_delay=0.3)) as sim:
        config = gateway_config(tmp_path, mosquitto, {"viettel": sim}, carrier={"tps": 100})
        async with running(config) as gw, Observer(mosquitto) as obs:
            for job_id in ids[:60]:
                await obs.submit(id=job_id, to="0981234567", text=f"reminder {job_id}")
            await asyncio.sleep(0.3)
            mosquitto.stop()  # receipts keep arriving while the broker is away
            await asyncio.sleep(1.0)
            assert not gw.mqtt.connected
            mosquitto.start()
            await obs.client.wait_connected(10)
            for job_id in ids[60:]:
                await obs.submit(id=job_id, to="0981234567", text=f"reminder {job_id}")
            await obs.wait_final(ids, timeout=30)
    for job_id in ids:
        assert _final_statuses(obs, job_id) == {"delivered"}, job_id
    sent = Counter(s.pdu.short_message for s in sim.submits)
    assert len(sent) == len(ids) and max(sent.values()) == 1


async def test_smsc_restart_rebinds_and_nothing_is_lost(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    first = Simulator(sim_config())
    await first.start()
    port = first.port
    config = gateway_config(tmp_path, mosquitto, {"viettel": first})
    async with running(config) as gw, Observer(mosquitto) as obs:
        await obs.submit(id="s-1", to="0981234567", text="before")
        await obs.wait_final(["s-1"])
        await first.stop()
        await asyncio.sleep(0.2)
        await obs.submit(id="s-2", to="0981234567", text="while down")
        await asyncio.sleep(0.5)
        assert obs.final("s-2") == []
        async with Simulator(sim_config(port=port)) as second:
            assert await gw.carriers["viettel"].wait_ready(10)
            await obs.wait_final(["s-2"], timeout=15)
            assert [s.pdu.short_message for s in second.submits] == [b"while down"]
    assert _final_statuses(obs, "s-1") == {"delivered"}
    assert _final_statuses(obs, "s-2") == {"delivered"}


async def test_sigterm_with_jobs_queued_then_restart_sends_each_once(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    ids = [f"t-{i}" for i in range(80)]
    async with Simulator(sim_config()) as sim:
        path = tmp_path / "gw.yaml"
        path.write_text(yaml.safe_dump(_config_file(sim, mosquitto, tmp_path)))
        async with Observer(mosquitto) as obs:
            gw = await _start_gateway(path)
            for job_id in ids:
                await obs.submit(id=job_id, to="0981234567", text=f"campaign {job_id}")
            await obs.wait_for(lambda: len(sim.submits) >= 20, timeout=10)
            gw.signal(signal.SIGTERM)
            assert await gw.wait(30) == 0
            sent_before = len(sim.submits)
            assert sent_before < len(ids), "the backlog should outlast the first run"
            gw = await _start_gateway(path)
            try:
                await obs.wait_final(ids, timeout=30)
            finally:
                gw.signal(signal.SIGTERM)
                assert await gw.wait(30) == 0
    sent = Counter(s.pdu.short_message for s in sim.submits)
    assert len(sent) == len(ids) and max(sent.values()) == 1
    for job_id in ids:
        assert _final_statuses(obs, job_id) == {"delivered"}, job_id
        assert obs.statuses(job_id)[0]["status"] == "submitted"


async def test_a_failing_background_task_is_logged_and_the_gateway_keeps_running(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_purge(self: Gateway) -> None:
        raise RuntimeError("purge broke")

    monkeypatch.setattr(Gateway, "_purge", broken_purge)
    async with Simulator(sim_config()) as sim:
        with capture_logs() as logs:
            async with running(gateway_config(tmp_path, mosquitto, {"viettel": sim})) as gw:
                async with Observer(mosquitto) as obs:
                    await asyncio.sleep(0.1)  # the purge task has failed by now
                    await obs.submit(id="p-1", to="0981234567", text="after the failure")
                    await obs.wait_final(["p-1"])
                    assert not gw._stop.is_set()
    assert _final_statuses(obs, "p-1") == {"delivered"}
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert [e["task"] for e in failed] == ["purge"]


def _config_file(sim: Simulator, broker: Mosquitto, tmp_path: Path) -> dict[str, object]:
    return {
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-sigterm"},
        "store": {"path": str(tmp_path / "sub.db")},
        "metrics": {"listen": None},
        "log": {"level": "info", "format": "json"},
        "carriers": [
            {
                "name": "viettel",
                "host": "127.0.0.1",
                "port": sim.port,
                "system_id": "shop",
                "password": "secret",
                "tps": 40,
                "source": {"address": "SHOPVN"},
                "prefixes": ["8498"],
                "reconnect_min": 0.05,
            }
        ],
    }


async def _start_gateway(path: Path) -> Child:
    """``smppgw run`` as its own process; returns once it logged ``gateway_ready``."""
    argv = [sys.executable, "-m", "smppgw", "run", "--config", str(path)]
    gateway = Child("smppgw run", argv, path.with_suffix(".log")).start()
    await gateway.wait_logged("gateway_ready", 15.0)
    return gateway
