"""Runs the real gateway in-process against a real mosquitto and real simulators.

The gateway, the simulators and an observer MQTT client share the test's event loop; all
traffic is real TCP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson

from smppgw.config import Config, MqttConfig
from smppgw.config.loader import parse_config
from smppgw.gateway import Gateway
from smppgw.mqtt import Message, MqttClient
from smppgw.sim.config import SimAccount, SimConfig
from smppgw.sim.server import Simulator

from support.broker import Mosquitto

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed"}


def gateway_config(
    tmp_path: Path,
    broker: Mosquitto,
    sims: dict[str, Simulator],
    *,
    prefixes: dict[str, list[str]] | None = None,
    carrier: dict[str, Any] | None = None,
    client_id: str = "gw-test",
    **top: Any,
) -> Config:
    default_prefixes = {
        "viettel": ["8498", "8486", "8496"],
        "vinaphone": ["8491", "8494", "8488"],
        "mobifone": ["8490", "8493", "8489"],
    }
    prefixes = prefixes or default_prefixes
    carriers = []
    for name, sim in sims.items():
        account = sim.config.accounts[0]
        carriers.append(
            {
                "name": name,
                "host": "127.0.0.1",
                "port": sim.port,
                "system_id": account.system_id,
                "password": account.password,
                "tps": 200,
                "window": 20,
                "source": {"address": "SHOPVN"},
                "prefixes": prefixes.get(name, default_prefixes.get(name, [])),
                "reconnect_min": 0.05,
                "reconnect_max": 0.5,
                **(carrier or {}),
            }
        )
    data: dict[str, Any] = {
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": client_id},
        "store": {"path": str(tmp_path / "gw.db")},
        "metrics": {"listen": None},
        "log": {"level": "warning", "format": "console"},
        "carriers": carriers,
        "ctl": {"socket": None},  # tests that talk to it pass ctl={"socket": ...}
    }
    data.update(top)
    return parse_config(data)


def sim_config(**kwargs: Any) -> SimConfig:
    kwargs.setdefault("accounts", [SimAccount("shop", "secret")])
    kwargs.setdefault("enquire_link_interval", 0)
    return SimConfig(**kwargs)


async def wait_until(
    changed: asyncio.Event, predicate: Callable[[], bool], timeout: float, what: str = "events"
) -> None:
    """Wait until ``predicate()`` holds, re-checking whenever ``changed`` is set (and at
    least every 0.2 s); AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(remaining, 0.2))


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Gateway]:
    gateway = Gateway(config)
    task = asyncio.create_task(gateway.run(install_signals=False))
    started = asyncio.create_task(gateway.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=15, return_when="FIRST_COMPLETED")
    if task in done:
        raise RuntimeError(f"gateway exited during start: {task.result()}")
    assert started in done, "gateway did not start"
    for carrier in gateway.carriers.values():
        await carrier.wait_ready(5)
    try:
        yield gateway
    finally:
        gateway.stop()
        await asyncio.wait_for(task, 30)


class Observer:
    """A second MQTT client: publishes jobs and records every event the gateway sends."""

    def __init__(self, broker: Mosquitto, client_id: str = "observer") -> None:
        self.client = MqttClient(
            MqttConfig(host=broker.host, port=broker.port, client_id=client_id),
            on_message=self._record,
        )
        self.messages: list[tuple[str, bytes]] = []
        self.by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.correlation: dict[str, list[bytes | None]] = defaultdict(list)
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Observer:
        await self.client.__aenter__()
        await self.client.subscribe("sms/status/#")
        await self.client.subscribe("sms/inbound/#")
        await self.client.subscribe("sms/rejected")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(None, None, None)

    async def _record(self, message: Message) -> None:
        self.messages.append((message.topic, message.payload))
        self.correlation[message.topic].append(message.correlation_data)
        with contextlib.suppress(orjson.JSONDecodeError):
            self.by_topic[message.topic].append(orjson.loads(message.payload))
        self._changed.set()

    async def submit(self, **job: Any) -> None:
        if "from_" in job:
            job["from"] = job.pop("from_")
        await self.client.publish("sms/submit", orjson.dumps(job))

    async def submit_raw(self, payload: bytes) -> None:
        await self.client.publish("sms/submit", payload)

    def statuses(self, job_id: str) -> list[dict[str, Any]]:
        return self.by_topic.get(f"sms/status/{job_id}", [])

    def final(self, job_id: str) -> list[dict[str, Any]]:
        return [e for e in self.statuses(job_id) if e["status"] in FINAL]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        await wait_until(self._changed, predicate, timeout)

    async def wait_final(self, job_ids: list[str], timeout: float = 10.0) -> None:
        await self.wait_for(lambda: all(self.final(j) for j in job_ids), timeout)
