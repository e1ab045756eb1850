"""A tiny run of ``smppgw bench e2e``: every scenario end to end with real processes.

The figures of a run this small say nothing about performance (and CI machines vary), so
this asserts that each scenario ran and measured what it names, plus the one figure that
is an invariant at any size: no one-second window at the SMSC holds more than the TPS.
The statistics helpers the figures rest on are checked exactly.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from smppgw.bench.report import as_json, format_results
from smppgw.bench.scenarios import OTP_COUNT, THROTTLE_TPS, Options, Progress
from smppgw.bench.stats import Latency, max_in_window, mean_rate, percentile

from support.broker import find_mosquitto

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


def tiny(tmp_path: Path) -> Options:
    return Options(
        jobs=300,
        rate=150.0,
        latency_seconds=1.0,
        throttle_seconds=2.0,
        otp_backlog=300,
        memory_jobs=2000,
        workdir=tmp_path,
    )


def test_every_scenario_runs_and_measures(tmp_path: Path) -> None:
    from smppgw.bench.cli import run_scenarios

    names = ["throughput", "latency", "throttle", "otp", "memory"]
    results = {r.name: r for r in run_scenarios(names, tiny(tmp_path), Progress(enabled=False))}

    t = results["throughput"].figures
    assert t["delivered"] == 300 and t["statuses"] == {"submitted": 300, "delivered": 300}
    assert t["jobs_per_second"] > 0 and t["gateway_cpu_us_per_job"] > 0
    assert t["gateway_peak_rss_mb"] >= t["gateway_rss_mb"] > 10

    lat = results["latency"].figures
    assert lat["jobs"] == 150
    for path in ("publish_to_submit_sm_ms", "publish_to_submitted_event_ms"):
        figures = lat[path]
        assert figures["count"] == 150
        assert 0 < figures["p50"] <= figures["p99"] <= figures["max"]
    # The SMSC sees a submit before the gateway can report it submitted.
    assert lat["publish_to_submit_sm_ms"]["p50"] < lat["publish_to_submitted_event_ms"]["p50"]

    th = results["throttle"].figures
    assert 0 < th["max_in_any_1s_window"] <= THROTTLE_TPS
    assert th["mean_rate"] > THROTTLE_TPS / 2
    assert th["smsc_throttled"] == 0

    otp = results["otp"].figures
    assert len(otp["publish_to_submit_sm_ms"]) == OTP_COUNT
    assert all(x > 0 for x in otp["publish_to_submit_sm_ms"])
    # The OTPs overtook the campaign: most of it was still queued when the last one went.
    assert otp["low_jobs_still_queued"] > 0

    mem = results["memory"].figures
    assert mem["jobs"] == 2000 and mem["gateway_rss_mb"] > 10 and mem["store_mb"] > 0

    table = format_results(list(results.values()))
    for name in names:
        assert f"\n{name} (" in table
    data = as_json(list(results.values()), {"smoke": True})
    orjson.dumps(data)  # JSON-able
    assert set(data["scenarios"]) == set(names)


def test_command_line_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "smppgw",
            "bench",
            "e2e",
            "--scenario",
            "throughput",
            "--jobs",
            "100",
            "--no-progress",
            "--workdir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "throughput with receipts" in proc.stdout
    data = orjson.loads(out.read_bytes())
    assert data["scenarios"]["throughput"]["figures"]["delivered"] == 100
    assert data["options"]["jobs"] == 100


def test_unknown_scenario_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "smppgw", "bench", "e2e", "--scenario", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "unknown scenario 'nope'" in proc.stderr


# ------------------------------------------------------------------ statistics


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_latency_is_in_milliseconds() -> None:
    lat = Latency.of([0.001, 0.002, 0.003, 0.010])
    assert (lat.count, lat.p50, lat.max) == (4, 2.0, 10.0)
    assert lat.mean == pytest.approx(4.0)
    assert Latency.of([]).count == 0


def test_max_in_window_counts_half_open_seconds() -> None:
    # 0.0 .. 0.99 is 100 events in [0, 1); the event at exactly 1.0 starts a new window.
    times = [i / 100 for i in range(100)] + [1.0]
    assert max_in_window(times, 1.0) == (100, 0.0)
    bursty = [0.0, 0.5, 0.6, 0.7, 1.55, 1.6]
    assert max_in_window(bursty, 1.0)[0] == 4  # 0.6, 0.7, 1.55, 1.6
    assert max_in_window([], 1.0)[0] == 0


def test_mean_rate_over_a_period() -> None:
    times = [i / 100 for i in range(200)]  # 100 a second for 2 s
    assert mean_rate(times, 0.0, 1.0) == pytest.approx(100.0)
    assert mean_rate(times, 0.5, 1.0) == pytest.approx(100.0)
    assert mean_rate(times, 1.5, 1.0) == pytest.approx(50.0)  # the run ends half-way
