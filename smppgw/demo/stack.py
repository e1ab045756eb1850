"""The run's configs: conf/sim-demo.yaml and conf/demo.yaml with this run's ports and paths.

The demo changes only what must differ per run (free ports, a temp store, the broker, a
unique MQTT client id), so what the user sees is what the two files in conf/ describe, and
``smppgw sim --config conf/sim-demo.yaml`` + ``smppgw run --config conf/demo.yaml`` give
the same set-up by hand. Both generated files are validated with the real parsers before a
process is started, so a broken file fails here with the parser's own message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smppgw.config import Config, ConfigError
from smppgw.config.loader import parse_config
from smppgw.mqtt.broker import free_port
from smppgw.sim.config import SimConfig, SimConfigError, configs_from_mapping

HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A demo config is missing or does not validate."""


def find_conf(name: str) -> Path:
    """conf/<name> in the current directory or in the source tree this package runs from."""
    candidates = [
        Path.cwd() / "conf" / name,
        Path(__file__).resolve().parents[2] / "conf" / name,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    shown = " or ".join(str(c) for c in candidates)
    raise StackError(f"{name} not found ({shown}); pass its path with the matching option")


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise StackError(f"{path}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SimPlan:
    """The simulator's generated config and where each SMSC listens."""

    path: Path
    smscs: dict[str, SimConfig]
    ports: dict[str, int]
    controls: dict[str, int]

    def control_url(self, name: str, endpoint: str) -> str:
        return f"http://{HOST}:{self.controls[name]}{endpoint}"


def plan_sims(source: Path, workdir: Path) -> SimPlan:
    """conf/sim-demo.yaml with every listener and control port moved to a free port."""
    raw = _load(source)
    smscs = raw.get("smscs") if isinstance(raw, dict) else None
    if not isinstance(smscs, dict) or not smscs:
        raise StackError(f"{source}: no smscs: section")
    ports: dict[str, int] = {}
    controls: dict[str, int] = {}
    for name, body in smscs.items():
        if not isinstance(body, dict):
            raise StackError(f"{source}: smscs.{name}: expected a mapping")
        ports[name] = free_port(HOST)
        controls[name] = free_port(HOST)
        body["listen"] = f"{HOST}:{ports[name]}"
        body["control"] = f"{HOST}:{controls[name]}"
    try:
        configs = {c.name: c for c in configs_from_mapping(raw)}
    except SimConfigError as exc:
        raise StackError(f"{source}: {exc}") from exc
    path = workdir / "sim.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return SimPlan(path, configs, ports, controls)


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    path: Path
    config: Config
    metrics_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}"


def plan_gateway(
    source: Path, workdir: Path, sims: SimPlan, broker: tuple[str, int]
) -> GatewayPlan:
    """conf/demo.yaml pointed at this run's broker, simulators, store and metrics port."""
    raw = _load(source)
    if not isinstance(raw, dict):
        raise StackError(f"{source}: expected a mapping at the top")
    mqtt = raw.setdefault("mqtt", {})
    mqtt["host"], mqtt["port"] = broker
    mqtt["client_id"] = f"smppgw-demo-{os.getpid()}"
    raw.setdefault("store", {})["path"] = str(workdir / "smppgw.db")
    # `smppgw ctl --socket <workdir>/ctl.sock status` talks to the demo's gateway; a UNIX
    # socket path is at most 107 bytes, so a very deep --workdir goes without.
    ctl_socket = workdir / "ctl.sock"
    raw["ctl"] = {"socket": str(ctl_socket) if len(bytes(ctl_socket)) <= 100 else None}
    metrics_port = free_port(HOST)
    raw["metrics"] = {"listen": f"{HOST}:{metrics_port}"}
    # The log goes to a file the demo reads: it waits for the "mqtt.subscribed" line.
    raw["log"] = {"level": "info", "format": "console"}
    for carrier in raw.get("carriers") or []:
        name = carrier.get("name") if isinstance(carrier, dict) else None
        if name not in sims.ports:
            raise StackError(f"{source}: carrier {name!r} has no simulator of that name")
        carrier["host"] = HOST
        carrier["port"] = sims.ports[name]
    try:
        config = parse_config(raw, base_dir=source.resolve().parent)
    except ConfigError as exc:
        raise StackError(f"{source}: {exc}") from exc
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return GatewayPlan(path, config, metrics_port)
