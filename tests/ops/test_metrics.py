"""Metrics and probes, scraped over real HTTP on 127.0.0.1 the way Prometheus and kubelet do."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from smppgw.config import CarrierConfig, Secret
from smppgw.ops.health import HealthState, ReadyPolicy, run_heartbeat
from smppgw.ops.http import HttpEndpoint
from smppgw.ops.metrics import Metrics
from smppgw.ops.telemetry import Telemetry
from smppgw.smpp.constants import Status

PASSWORD = "hunter2-Sup3rSecret"

CARRIERS = (
    CarrierConfig(
        name="viettel", host="127.0.0.1", port=2775, system_id="shopvn", password=Secret(PASSWORD)
    ),
    CarrierConfig(
        name="vinaphone",
        host="127.0.0.1",
        port=2776,
        system_id="shopvn",
        password=Secret(PASSWORD),
        sessions=2,
        tps=50,
    ),
)

#: Every label name smppgw's own metrics may use: all from small, known sets.
ALLOWED_LABELS = {
    "carrier",
    "session",
    "bind",
    "lane",
    "command_status",
    "reason",
    "state",
    "result",
    "kind",
    "status",
    "le",
    # consent: bounded sets (opt_out/opt_in, mo/admin, reject/defer)
    "action",
    "source",
    # smppgw_build_info
    "version",
    "python",
    "implementation",
}

EXPECTED = {
    # family name as the parser reports it (counters without _total) → type
    "smppgw_jobs_received": "counter",
    "smppgw_jobs_duplicate": "counter",
    "smppgw_jobs_rejected": "counter",
    "smppgw_garbage_payloads": "counter",
    "smppgw_jobs_final": "counter",
    "smppgw_submit_sm": "counter",
    "smppgw_submit_sm_resp": "counter",
    "smppgw_submit_sm_timeouts": "counter",
    "smppgw_parts_submitted": "counter",
    "smppgw_submit_retries": "counter",
    "smppgw_receipts": "counter",
    "smppgw_receipts_unmatched": "counter",
    "smppgw_receipts_early": "counter",
    "smppgw_mo_messages": "counter",
    "smppgw_mo_parts": "counter",
    "smppgw_mo_parts_refused": "counter",
    "smppgw_mo_evicted": "counter",
    "smppgw_session_state": "gauge",
    "smppgw_bind_attempts": "counter",
    "smppgw_reconnects": "counter",
    "smppgw_window_in_use": "gauge",
    "smppgw_malformed_pdus": "counter",
    "smppgw_enquire_link_timeouts": "counter",
    "smppgw_queue_depth": "gauge",
    "smppgw_throttle_wait_seconds": "histogram",
    "smppgw_smsc_throttled": "counter",
    "smppgw_throttle_backoff_seconds": "gauge",
    "smppgw_tps_limit": "gauge",
    "smppgw_queue_latency_seconds": "histogram",
    "smppgw_submit_response_seconds": "histogram",
    "smppgw_receipt_latency_seconds": "histogram",
    "smppgw_store_commit_seconds": "histogram",
    "smppgw_store_commit_writes": "histogram",
    "smppgw_store_size_bytes": "gauge",
    "smppgw_store_errors": "counter",
    "smppgw_mqtt_connected": "gauge",
    "smppgw_mqtt_connects": "counter",
    "smppgw_mqtt_outbox_depth": "gauge",
    "smppgw_events_published": "counter",
    "smppgw_config_reloads": "counter",
    "smppgw_heartbeat_age_seconds": "gauge",
    "smppgw_http_connections_dropped": "counter",
    "smppgw_build_info": "gauge",
}


class Clock:
    """A monotonic clock the test moves by hand, so staleness needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def exercise(metrics: Metrics) -> None:
    """Touch every helper once, with realistic values."""
    metrics.init_carriers(CARRIERS)
    metrics.jobs_received.labels(lane="high").inc()
    metrics.jobs_duplicate.inc()
    metrics.job_rejected("no_route")
    metrics.garbage_payloads.inc()
    metrics.jobs_final.labels(carrier="viettel", status="delivered").inc()
    metrics.submit_sm.labels(carrier="viettel").inc(3)
    telemetry = Telemetry(metrics)
    telemetry.submit_response("viettel", Status.ESME_ROK, latency=0.012)
    telemetry.submit_response("viettel", Status.ESME_RTHROTTLED, latency=0.004)
    metrics.parts_submitted.labels(carrier="viettel").inc()
    telemetry.receipt("viettel", "DELIVRD")
    telemetry.receipt_latency("viettel", 4.2)
    metrics.receipts_unmatched.labels(carrier="viettel").inc()
    metrics.mo_messages.labels(carrier="vinaphone").inc()
    telemetry.session_state("viettel", 0, "transceiver", "bound")
    telemetry.session_state("vinaphone", 1, "receiver", "connecting")
    telemetry.bind_result("viettel", Status.ESME_ROK)
    telemetry.bind_result("vinaphone", "connect_error")
    metrics.reconnects.labels(carrier="vinaphone").inc()
    metrics.window_in_use.labels(carrier="viettel", session="0").set(7)
    metrics.set_queue_depths({("viettel", "high"): 2, ("viettel", "low"): 100_000})
    metrics.throttle_wait.labels(carrier="viettel").observe(0.01)
    metrics.throttle_backoff.labels(carrier="viettel").set(2.0)
    metrics.queue_latency.labels(carrier="viettel", lane="high").observe(0.003)
    metrics.store_commit.observe(0.0015)
    metrics.store_batch.observe(40)
    metrics.store_size.set(1_234_567)
    metrics.mqtt_connected.set(1)
    metrics.mqtt_connects.inc()
    metrics.mqtt_outbox_depth.set(3)
    metrics.events_published.labels(kind="status").inc()
    metrics.malformed_pdus.labels(carrier="viettel").inc()


@pytest.fixture
def served() -> Iterator[tuple[Metrics, HealthState, Clock, int]]:
    clock = Clock()
    health = HealthState(clock=clock)
    metrics = Metrics(version="1.2.3")
    endpoint = HttpEndpoint(metrics, health)
    _, port = endpoint.start("127.0.0.1:0")
    try:
        yield metrics, health, clock, port
    finally:
        endpoint.stop()


def test_scrape_over_http_names_every_metric_with_help_and_type(served):
    metrics, _, _, port = served
    exercise(metrics)
    status, body = get(port, "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name, kind in EXPECTED.items():
        assert name in families, f"{name} missing from the scrape"
        assert families[name].type == kind, name
        assert len(families[name].documentation) > 15, f"{name} has no useful HELP"
    # the process itself is visible too (memory, fds, CPU), from our private registry
    assert "process_resident_memory_bytes" in families
    text = body.decode()
    assert 'smppgw_build_info{implementation="CPython",python="' in text
    assert 'version="1.2.3"' in text
    assert 'smppgw_submit_sm_resp_total{carrier="viettel",command_status="ESME_ROK"} 1.0' in text
    assert (
        'smppgw_smsc_throttled_total{carrier="viettel",command_status="ESME_RTHROTTLED"} 1.0'
        in text
    )
    assert (
        'smppgw_session_state{bind="trx",carrier="viettel",session="0",state="bound"} 1.0' in text
    )
    assert (
        'smppgw_session_state{bind="trx",carrier="viettel",session="0",state="connecting"} 0.0'
        in text
    )
    assert 'smppgw_queue_depth{carrier="viettel",lane="low"} 100000.0' in text
    assert 'smppgw_queue_depth{carrier="vinaphone",lane="normal"} 0.0' in text
    assert 'smppgw_tps_limit{carrier="vinaphone"} 50.0' in text


def test_metric_names_follow_prometheus_conventions(served):
    metrics, _, _, port = served
    exercise(metrics)
    _, body = get(port, "/metrics")
    for family in text_string_to_metric_families(body.decode()):
        if not family.name.startswith("smppgw_"):
            continue
        for sample in family.samples:
            assert not sample.name.endswith("_created"), sample.name
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
            assert set(sample.labels) <= ALLOWED_LABELS, (sample.name, sample.labels)
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_writes")), family.name


def test_label_values_stay_bounded_whatever_callers_pass(served):
    metrics, _, _, port = served
    metrics.job_rejected("job 84912345678 said hello")  # a careless caller
    telemetry = Telemetry(metrics)
    telemetry.receipt("viettel", "stat:WEIRD")
    telemetry.submit_response("viettel", 0x0000_0401, 0.0)  # vendor-specific
    telemetry.submit_response("viettel", 0x0012_3456, 0.0)  # nonsense
    telemetry.bind_result("viettel", "ssl handshake failed: cert for 10.0.0.1")
    telemetry.session_state("viettel", 0, "transceiver", "flapping")
    metrics.set_queue_depths({("viettel", "urgent!!"): 5})
    _, body = get(port, "/metrics")
    text = body.decode()
    assert "84912345678" not in text and "WEIRD" not in text and "10.0.0.1" not in text
    assert 'smppgw_jobs_rejected_total{reason="other"} 1.0' in text
    assert 'smppgw_receipts_total{carrier="viettel",state="other"} 1.0' in text
    assert 'command_status="VENDOR_SPECIFIC"' in text
    assert 'command_status="UNKNOWN"' in text
    assert 'smppgw_bind_attempts_total{carrier="viettel",result="other"} 1.0' in text
    assert 'state="closed"} 1.0' in text
    assert 'smppgw_queue_depth{carrier="viettel",lane="other"} 5.0' in text


def test_queue_depths_not_reported_again_drop_to_zero_and_removed_carriers_vanish():
    metrics = Metrics(process_metrics=False)
    metrics.init_carriers(CARRIERS)
    metrics.set_queue_depths({("viettel", "normal"): 10, ("vinaphone", "low"): 4})
    metrics.set_queue_depths({("viettel", "normal"): 3})
    text = metrics.exposition().decode()
    assert 'smppgw_queue_depth{carrier="viettel",lane="normal"} 3.0' in text
    assert 'smppgw_queue_depth{carrier="vinaphone",lane="low"} 0.0' in text
    Telemetry(metrics).session_state("vinaphone", 0, "transceiver", "bound")
    metrics.remove_carrier("vinaphone")
    text = metrics.exposition().decode()
    assert 'carrier="vinaphone"' not in text
    assert 'carrier="viettel"' in text


def test_two_instances_do_not_collide():
    first, second = Metrics(), Metrics()
    first.jobs_duplicate.inc()
    assert b"smppgw_jobs_duplicate_total 1.0" in first.exposition()
    assert b"smppgw_jobs_duplicate_total 0.0" in second.exposition()


def test_healthz_is_200_then_503_when_the_heartbeat_goes_stale(served):
    _, health, clock, port = served
    health.beat()
    status, body = get(port, "/healthz")
    assert status == 200
    assert json.loads(body) == {"alive": True, "reasons": [], "heartbeat_age_seconds": 0.0}
    clock.now += 5.5
    status, body = get(port, "/healthz")
    assert status == 503
    answer = json.loads(body)
    assert answer["alive"] is False
    assert answer["reasons"] == ["event loop: no heartbeat for 5.5 s"]
    health.beat()
    assert get(port, "/healthz")[0] == 200


def test_readyz_says_why_not_ready(served):
    _, health, _, port = served
    health.set_carriers(["viettel", "vinaphone"])
    status, body = get(port, "/readyz")
    assert status == 503
    answer = json.loads(body)
    assert answer["ready"] is False
    assert answer["reasons"] == [
        "mqtt: not connected",
        "carrier viettel: no bind up",
        "carrier vinaphone: no bind up",
    ]
    health.set_mqtt_connected(True)
    health.set_binds("viettel", 2)
    status, body = get(port, "/readyz")
    assert status == 503
    assert json.loads(body)["reasons"] == ["carrier vinaphone: no bind up"]
    health.set_binds("vinaphone", 1)
    status, body = get(port, "/readyz")
    assert status == 200
    assert json.loads(body) == {
        "ready": True,
        "reasons": [],
        "mqtt_connected": True,
        "binds": {"viettel": 2, "vinaphone": 1},
        "policy": "all",
        "paused": [],
        "failing_over": [],
    }
    # An operator's pause (smppgw ctl) is shown, and is not a reason to be unready.
    health.set_paused("vinaphone", True)
    status, body = get(port, "/readyz")
    assert status == 200 and json.loads(body)["paused"] == ["vinaphone"]
    # A carrier down long enough that its jobs go elsewhere (failover) is told apart.
    health.set_failing_over("viettel", True)
    health.set_binds("viettel", 0)
    status, body = get(port, "/readyz")
    answer = json.loads(body)
    assert answer["failing_over"] == ["viettel"] and answer["paused"] == ["vinaphone"]
    assert answer["reasons"] == ["carrier viettel: no bind up"]
    health.set_failing_over("viettel", False)
    health.set_binds("viettel", 2)
    health.set_paused("vinaphone", False)
    health.set_problem("store", "database is locked")
    assert json.loads(get(port, "/readyz")[1])["reasons"] == ["store: database is locked"]
    health.set_problem("store", None)
    health.set_draining()
    status, body = get(port, "/readyz")
    assert status == 503
    assert json.loads(body)["reasons"] == ["gateway: shutting down"]


def test_readiness_policies():
    health = HealthState(policy="any")
    health.set_mqtt_connected(True)
    health.set_carriers(["viettel", "vinaphone"])
    assert health.readiness().reasons == ("carriers: no bind up on any carrier",)
    health.set_binds("vinaphone", 1)
    assert health.readiness().ok
    health.set_policy(ReadyPolicy.NONE)
    health.set_binds("vinaphone", 0)
    assert health.readiness().ok
    health.set_mqtt_connected(False)
    assert health.readiness().reasons == ("mqtt: not connected",)
    # a reload that removes a carrier forgets it; one that adds one starts it at 0 binds
    health.set_policy("all")
    health.set_mqtt_connected(True)
    health.set_binds("viettel", 1)
    health.set_carriers(["viettel", "mobifone"])
    assert health.readiness().reasons == ("carrier mobifone: no bind up",)


async def test_healthz_notices_a_blocked_event_loop():
    health = HealthState(stale_after=0.3)
    endpoint = HttpEndpoint(Metrics(process_metrics=False), health)
    _, port = endpoint.start("127.0.0.1:0")
    beats = asyncio.create_task(run_heartbeat(health, interval=0.05))
    try:
        await asyncio.sleep(0.2)
        assert (await asyncio.to_thread(get, port, "/healthz"))[0] == 200
        seen: list[int] = []
        prober = threading.Thread(
            target=lambda: (time.sleep(0.5), seen.append(get(port, "/healthz")[0]))
        )
        prober.start()
        time.sleep(0.8)  # a callback that blocks the loop: no heartbeat meanwhile
        prober.join(timeout=5)
        assert seen == [503]
        await asyncio.sleep(0.1)
        assert (await asyncio.to_thread(get, port, "/healthz"))[0] == 200
        _, body = await asyncio.to_thread(get, port, "/metrics")
        assert b"smppgw_heartbeat_age_seconds " in body
    finally:
        beats.cancel()
        endpoint.stop()


def test_a_password_never_appears_in_a_scrape_or_probe(served):
    metrics, health, _, port = served
    exercise(metrics)
    health.set_carriers(c.name for c in CARRIERS)
    health.set_problem("carrier viettel", "bind refused: ESME_RINVPASWD")
    for path in ("/metrics", "/healthz", "/readyz"):
        _, body = get(port, path)
        assert PASSWORD.encode() not in body, path


def test_unknown_paths_are_404_json(served):
    _, _, _, port = served
    status, body = get(port, "/admin")
    assert status == 404
    assert json.loads(body) == {"error": "no such path: /admin"}


def test_stop_releases_the_port_and_serve_twice_is_refused():
    health = HealthState()
    endpoint = HttpEndpoint(Metrics(process_metrics=False), health)
    host, port = endpoint.start("127.0.0.1:0")
    assert host == "127.0.0.1"
    with pytest.raises(RuntimeError):
        endpoint.start("127.0.0.1:0")
    endpoint.stop()
    endpoint.stop()  # idempotent
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
    # the same port can be bound again right away (a reload or restart)
    again = HttpEndpoint(Metrics(process_metrics=False), health)
    assert again.start(f"127.0.0.1:{port}")[1] == port
    again.stop()


def test_serves_ipv6_loopback_when_available():
    endpoint = HttpEndpoint(Metrics(process_metrics=False), HealthState())
    try:
        _, port = endpoint.start("[::1]:0")
    except OSError as error:  # pragma: no cover - depends on the machine
        pytest.skip(f"no IPv6 loopback here: {error}")
    try:
        with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=5) as response:
            assert response.status == 200
    finally:
        endpoint.stop()


def test_promtool_finds_nothing_to_fix(served):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus' ships it)")
    metrics, _, _, port = served
    exercise(metrics)
    _, body = get(port, "/metrics")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""
