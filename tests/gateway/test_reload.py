"""SIGHUP reload: changed carriers rebind, unchanged ones keep their binds, a broken
config is refused and the running one stays."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import yaml

from smppgw.config.loader import load_config
from smppgw.gateway import Gateway
from smppgw.sim.server import Simulator

from gateway.harness import Observer, sim_config
from support.broker import Mosquitto


def _carrier(name: str, sim: Simulator, prefixes: list[str], tps: int = 50) -> dict[str, Any]:
    return {
        "name": name,
        "host": "127.0.0.1",
        "port": sim.port,
        "system_id": "shop",
        "password": "secret",
        "tps": tps,
        "source": "SHOPVN",
        "prefixes": prefixes,
        "reconnect_min": 0.05,
    }


async def test_sighup_reload_applies_changes_and_keeps_unchanged_binds(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        Simulator(sim_config(name="viettel")) as viettel,
        Simulator(sim_config(name="vinaphone")) as vinaphone,
        Simulator(sim_config(name="mobifone")) as mobifone,
    ):
        doc: dict[str, Any] = {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "gw-reload"},
            "store": {"path": str(tmp_path / "gw.db")},
            "metrics": {"listen": None},
            "log": {"level": "warning", "format": "console"},
            "carriers": [
                _carrier("viettel", viettel, ["8498"]),
                _carrier("vinaphone", vinaphone, ["8491"]),
            ],
        }
        path = tmp_path / "gw.yaml"
        path.write_text(yaml.safe_dump(doc))
        gateway = Gateway(load_config(path), config_path=str(path))
        task = asyncio.create_task(gateway.run())  # installs the real SIGHUP handler
        await asyncio.wait_for(gateway.started.wait(), 15)
        try:
            for carrier in gateway.carriers.values():
                assert await carrier.wait_ready(5)
            viettel_carrier = gateway.carriers["viettel"]
            binds_before = viettel.stats()["binds"]

            # vinaphone's tps changes, mobifone is added (taking 8493), viettel unchanged.
            doc["carriers"][1]["tps"] = 20
            doc["carriers"].append(_carrier("mobifone", mobifone, ["8493"]))
            doc["log"]["level"] = "info"
            path.write_text(yaml.safe_dump(doc))
            os.kill(os.getpid(), signal.SIGHUP)
            await _until(lambda: "mobifone" in gateway.carriers)
            assert await gateway.carriers["mobifone"].wait_ready(5)
            assert gateway.carriers["viettel"] is viettel_carrier
            assert viettel.stats()["binds"] == binds_before
            assert gateway.carriers["vinaphone"].config.tps == 20

            async with Observer(mosquitto) as obs:
                await obs.submit(id="rl-1", to="0931234567", text="routed to the new carrier")
                await obs.wait_final(["rl-1"])
            assert obs.statuses("rl-1")[0]["carrier"] == "mobifone"

            # A broken file is refused: everything stays as it was.
            path.write_text("carriers:\n  - name: viettel\n    tsp: 5\n")
            assert await gateway.reload() is False
            assert set(gateway.carriers) == {"viettel", "vinaphone", "mobifone"}
            assert gateway.carriers["viettel"] is viettel_carrier
        finally:
            gateway.stop()
            assert await asyncio.wait_for(task, 30) == 0
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)
