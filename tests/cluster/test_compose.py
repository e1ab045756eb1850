"""compose.yaml (README "Scaling out"): the services the issue names, and gateway and
simulator configs that the real readers accept. (Docker itself is not available here:
the file is checked, not run.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from smppgw.config import StoreBackend
from smppgw.config.loader import load_config
from smppgw.sim.config import load_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_has_the_cluster_and_its_configs_are_valid(tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "mosquitto", "sim", "gw-a", "gw-b"} <= set(services)
    secrets_dir = ROOT / "deploy" / "compose" / "secrets"
    configs = []
    for name in ("gw-a", "gw-b"):
        service = services[name]
        assert service["hostname"] == name
        assert set(service["secrets"]) == {"smppgw_dsn", "smppgw_redis"}
        source = ROOT / service["volumes"][0].split(":")[0].removeprefix("./")
        text = source.read_text().replace("/run/secrets/", f"{secrets_dir}/")
        local = tmp_path / f"{name}.yaml"
        local.write_text(text)
        configs.append(load_config(local))
    a, b = configs
    assert a.mqtt.client_id != b.mqtt.client_id
    assert a.mqtt.shared_group == b.mqtt.shared_group == "smppgw"
    for config in configs:
        assert config.store.backend is StoreBackend.POSTGRES
        assert config.store.dsn is not None and config.cluster.redis is not None
        assert config.carriers[0].host == "sim"
    (sim,) = load_yaml(ROOT / "deploy" / "compose" / "sim.yaml")
    assert sim.port == 2775 and sim.accounts[0].system_id == a.carriers[0].system_id
    assert sim.accounts[0].tps == a.carriers[0].tps == b.carriers[0].tps
