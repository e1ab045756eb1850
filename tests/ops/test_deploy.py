"""The shipped Prometheus rules and Grafana dashboard work against the real gateway.

``deploy/prometheus/smppgw.rules.yml`` holds the README's alerts; its unit tests
(``smppgw.rules.test.yml``) make each alert fire on the series it is meant for and stay
quiet on look-alikes, and run here through ``promtool test rules``. Every query of
``deploy/grafana/smppgw.json`` is wrapped in a recording rule and parsed by ``promtool
check rules``, so a typo in a panel fails the suite instead of showing "No data". Last,
every metric and label the rules and the dashboard name is looked up in a real /metrics
scrape of a running gateway: a renamed metric cannot leave an alert that never fires.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from smppgw.sim.server import Simulator

from gateway.harness import Observer, gateway_config, running, sim_config
from support.broker import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "smppgw.rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "smppgw.rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "smppgw.json"

#: What Grafana puts in place of the dashboard's variables before a query is sent.
TEMPLATE_VALUES = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range": "6h",
    "$carrier": ".*",
}

#: Panels the dashboard must have (issue #17), matched against panel titles.
REQUIRED_PANELS = (
    "Parts accepted by carrier",
    "Jobs final by status",
    "TPS in use vs limit",
    "Queue depth by lane",
    "Receipt latency",
    "Bind states",
    "Outbox depth",
    "Events published and set aside",
    "MQTT connected",
    "Store commit latency",
)

#: Labels Prometheus adds at scrape time, and the histogram bucket label.
SCRAPE_LABELS = {"instance", "job", "le"}

#: A metric name (not a recording rule's ``level:metric:operation`` name).
METRIC = re.compile(r"(?<![\w:])smppgw_[a-z0-9_]+(?![\w:])")
SELECTOR = re.compile(r"(?<![\w:])(smppgw_[a-z0-9_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus' ships it)")
    return promtool


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _dashboard_exprs() -> list[str]:
    """Every panel query, with Grafana's variables replaced the way Grafana does."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in TEMPLATE_VALUES.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
    return exprs


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def _check_as_rules(tmp_path: Path, exprs: list[str]) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on one recording rule per expression."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    file = tmp_path / "dashboard.rules.yml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return _run(_promtool(), "check", "rules", str(file))


# --- rules -------------------------------------------------------------------------------


def test_rules_parse_and_pass_their_unit_tests() -> None:
    promtool = _promtool()
    checked = _run(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_readme_alert_is_a_rule_that_says_what_to_check() -> None:
    readme = (ROOT / "README.md").read_text()
    advice = readme[readme.index("Alerts worth setting") :]
    advice = advice[: advice.index("\n\n")]
    alerted = {name for rule in _alerts().values() for name in METRIC.findall(rule["expr"])}
    assert set(METRIC.findall(advice)) <= alerted
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"].strip(), name
        assert len(rule["annotations"]["description"]) > 80, name
        # a carrier's alert names the carrier; the others name the gateway
        label = "carrier" if "carrier" in rule["expr"] else "(carrier|instance)"
        assert re.search(rf"\$labels\.{label}\b", rule["annotations"]["summary"]), name


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for name in _alerts():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no firing case"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no quiet case"


# --- dashboard ---------------------------------------------------------------------------


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    for expr in exprs:
        assert "$" not in expr, f"unreplaced variable in {expr}"
    checked = _check_as_rules(tmp_path, exprs)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout
    # the check bites: one unbalanced parenthesis is refused
    broken = _check_as_rules(tmp_path, [*exprs, "sum(rate(smppgw_submit_sm_total[1m])"])
    assert broken.returncode != 0


def test_dashboard_is_importable_and_filters_by_carrier() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["carrier"]["definition"] == "label_values(smppgw_tps_limit, carrier)"
    panels = [p for p in _panels(dashboard) if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    assert set(REQUIRED_PANELS) <= titles
    assert len({p["id"] for p in _panels(dashboard)}) == len(list(_panels(dashboard)))
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            # a query on a per-carrier metric honours the carrier picker
            if "carrier" in target["expr"]:
                assert 'carrier=~"$carrier"' in target["expr"], panel["title"]


# --- metric names against a real scrape --------------------------------------------------


def _series_names(name: str, kind: str | None) -> list[str]:
    """The series names one family is exposed as (counters end in _total, ...)."""
    return {
        "counter": [f"{name}_total"],
        "histogram": [f"{name}_bucket", f"{name}_sum", f"{name}_count"],
        "info": [f"{name}_info"],
    }.get(kind or "untyped", [name])


def _served_names(scrape: str) -> set[str]:
    """Every series name the exposition declares (a labelled family with no child yet
    still has its TYPE line) or samples."""
    names = set()
    for family in text_string_to_metric_families(scrape):
        names.update(_series_names(family.name, family.type))
        names.update(sample.name for sample in family.samples)
    return names


def _declared_labels(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Series name → label names, as the gateway's metrics declare them: a scrape shows a
    family's labels only once it has a child, and most per-carrier failures have none."""
    labels: dict[str, set[str]] = {}
    # the registry has no public list of its collectors
    for collector in list(registry._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            for series in _series_names(collector._name, collector._type):
                labels[series] = set(collector._labelnames)
    return labels


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


async def test_rules_and_dashboard_name_only_metrics_the_gateway_serves(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim = Simulator(sim_config(name="viettel", receipt_delay=0.05))
    port = free_port()
    async with sim:
        config = gateway_config(
            tmp_path, mosquitto, {"viettel": sim}, metrics={"listen": f"127.0.0.1:{port}"}
        )
        async with running(config) as gateway, Observer(mosquitto) as observer:
            # one job through to its receipt, so the per-job families have samples too
            await observer.submit(id="deploy-1", to="0981234567", text="hello")
            await observer.wait_final(["deploy-1"])
            scrape = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    assert observer.final("deploy-1")[0]["status"] == "delivered"
    served = _served_names(scrape)
    labels = _declared_labels(gateway.metrics.registry)

    queries = [rule["expr"] for rule in _rules()] + _dashboard_exprs()
    dashboard = json.loads(DASHBOARD.read_text())
    queries += [v.get("definition", "") for v in dashboard["templating"]["list"]]
    used = {name for expr in queries for name in METRIC.findall(expr)}
    assert len(used) >= 40
    assert used <= served, f"not in /metrics: {sorted(used - served)}"

    for expr in queries:
        # a selector's labels are the metric's own; a grouping's belong to some metric used
        for name, matchers in SELECTOR.findall(expr):
            for label in re.findall(r"(\w+)\s*=~?", matchers):
                assert label in labels[name] | SCRAPE_LABELS, f"{name} has no {label}: {expr}"
        known = set().union(*(labels[n] for n in METRIC.findall(expr))) | SCRAPE_LABELS
        for grouping in GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in grouping.split(","))):
                assert label in known, f"no metric in {expr} has the label {label}"
