"""The benchmark's processes: mosquitto, ``smppgw sim`` and ``smppgw run``, and what the
kernel says about them.

Each part is a separate OS process, as in production, so the gateway's figures include
everything it really does (MQTT parsing, SQLite commits in its writer thread or process,
SMPP I/O) and nothing the other parts do. CPU time and memory come from ``/proc/<pid>``:
the kernel's own accounting of the whole process (all threads) and, for the gateway, of
its child processes too (``store.writer: process``), not the gateway's opinion of itself.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from smppgw.mqtt.broker import Mosquitto, free_port
from smppgw.procs import Child, ProcSample, sample, start_planned

__all__ = [
    "Broker",
    "Child",
    "ProcSample",
    "free_port",
    "http_json",
    "machine_busy",
    "sample",
    "start_gateway",
    "start_sim",
    "tree_sample",
]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` (thread id → user + system)."""
    out: dict[int, float] = {}
    for entry in os.scandir(f"/proc/{pid}/task"):
        try:
            with open(f"{entry.path}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (a scan of ``/proc``)."""
    out: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def tree_sample(pid: int) -> ProcSample:
    """``pid`` and its child processes together (the gateway and its store writer process,
    ``store.writer: process``): CPU seconds and memory summed, so a gateway is measured
    whole however it is split. A peak (``VmHWM``) sum is an upper bound of the joint peak."""
    total = sample(pid)
    for child in children(pid):
        try:
            part = sample(child)
        except OSError:  # exited meanwhile
            continue
        total = ProcSample(
            total.at, total.cpu + part.cpu, total.rss + part.rss, total.hwm + part.hwm
        )
    return total


def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, total CPU seconds) from ``/proc/stat``.

    The benchmark shares the machine with whatever else runs; the difference between the
    machine's busy time and the benchmark's processes says how much CPU others took."""
    with open("/proc/stat", "rb") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / _TICK, total / _TICK


def http_json(host: str, port: int, path: str, timeout: float = 10.0) -> Any:
    """GET ``path`` and decode the JSON body (the simulator's control port)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
        return orjson.loads(body)
    finally:
        conn.close()


def http_text(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


class Broker(Mosquitto):
    """mosquitto on a free loopback port. ``max_queued_messages 0``: the default (1000)
    silently drops QoS 1 messages queued for a client that is behind, which would make a
    benchmark that outruns the gateway lose jobs. No persistence: the gateway's store is
    the durable part under test, and the broker is restarted for every scenario."""

    def __init__(self, workdir: Path, *, max_inflight: int = 1000) -> None:
        super().__init__(directory=workdir, persistence=False, max_inflight_messages=max_inflight)
        self.start()

    @property
    def pid(self) -> int:
        """Running for the whole scenario (started by the constructor)."""
        pid = super().pid
        assert pid is not None, "mosquitto is not running"
        return pid


class SimProcess(Child):
    """``smppgw sim`` with an HTTP control port; ``port`` / ``control_port`` are read from
    the lines it prints once bound."""

    port: int
    control_port: int
    host = "127.0.0.1"

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = http_json(self.host, self.control_port, "/stats")
        return result

    def submits(self, since: int, limit: int = 10_000) -> dict[str, Any]:
        result: dict[str, Any] = http_json(
            self.host, self.control_port, f"/submits?since={since}&limit={limit}", timeout=30.0
        )
        return result

    def all_submits(self, since: int = 0) -> list[dict[str, Any]]:
        """Every accepted submit from index ``since`` on, paged."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.submits(since)
            items = page["submits"]
            out.extend(items)
            if not items or page["next"] >= page["total"]:
                return out
            since = page["next"]


_LISTEN = re.compile(rb"listening on [^\s:]+:(\d+)")
_CONTROL = re.compile(rb"control on http://[^\s:]+:(\d+)")


def start_sim(
    workdir: Path,
    accounts: str,
    *,
    receipt_delay: float = 0.0,
    extra: list[str] | None = None,
    timeout: float = 20.0,
) -> SimProcess:
    """Start ``smppgw sim --accounts ACCOUNTS`` on free ports and wait until it listens."""
    argv = [
        sys.executable,
        "-m",
        "smppgw",
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--accounts",
        accounts,
        "--receipt-delay",
        str(receipt_delay),
        *(extra or []),
    ]
    sim = SimProcess("smppgw sim", argv, workdir / "sim.log", capture_stdout=True)
    sim.start()
    port, control = sim.read_stdout([_LISTEN, _CONTROL], timeout)
    sim.port, sim.control_port = port, control
    return sim


class GatewayProcess(Child):
    metrics_port: int
    config_path: Path
    store_path: Path

    def sample(self) -> ProcSample:
        """The gateway with its child processes (its store writer process)."""
        return tree_sample(self.pid)

    def metrics(self) -> dict[str, float]:
        """The gateway's Prometheus samples, ``name{labels}`` → value."""
        status, text = http_text("127.0.0.1", self.metrics_port, "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics: HTTP {status}")
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
        return out

    def metric_sum(self, prefix: str) -> float:
        """Sum of every sample whose name (before the labels) is ``prefix``."""
        total = 0.0
        for name, value in self.metrics().items():
            if name == prefix or name.startswith(prefix + "{"):
                total += value
        return total


def start_gateway(
    workdir: Path,
    broker: Broker,
    carriers: list[dict[str, Any]],
    *,
    log_level: str = "warning",
    store: dict[str, Any] | None = None,
    name: str = "gateway",
    mqtt: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
) -> GatewayProcess:
    """Write a config and start ``smppgw run``; returns once its metrics port answers.
    ``name`` names its files (several gateways in one workdir); ``mqtt`` / ``cluster``:
    settings added to those sections (a cluster run's client id, shared group, node).
    A metrics port taken by another process before the gateway bound it is planned anew
    (:func:`smppgw.procs.start_planned`)."""
    store_path = workdir / f"{name}.db"
    config: dict[str, Any] = {
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "client_id": "smppgw-bench",
            **(mqtt or {}),
        },
        "store": {"path": str(store_path), **(store or {})},
        "metrics": {},
        "ctl": {"socket": None},  # never the host's /run/smppgw
        "log": {"level": log_level, "format": "json"},
        "carriers": carriers,
    }
    if cluster:
        config["cluster"] = cluster
    config_path = workdir / f"{name}.yaml"

    def plan() -> int:
        """A metrics port planned free, in the config file."""
        port = free_port()
        config["metrics"]["listen"] = f"127.0.0.1:{port}"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return port

    metrics_port = plan()
    argv = [sys.executable, "-m", "smppgw", "run", "--config", str(config_path)]
    prelude = os.environ.get("SMPPGW_BENCH_PRELUDE")
    if prelude:  # experiments: code run in the gateway process before smppgw starts
        code = f"import sys\n{prelude}\nfrom smppgw.cli import main\nsys.exit(main())"
        argv = [sys.executable, "-c", code, "run", "--config", str(config_path)]
    gateway = GatewayProcess(f"smppgw run ({name})", argv, workdir / f"{name}.log")
    gateway.config_path = config_path
    gateway.store_path = store_path
    gateway.metrics_port = start_planned(
        gateway, "127.0.0.1", metrics_port, replan=plan, timeout=20.0
    )
    return gateway
