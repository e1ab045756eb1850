"""``smppgw bench e2e --backend postgres --gateways 2``, tiny: both gateways on their own
PostgreSQL and Redis, every job delivered, CPU reported for the gateways and the
database. Receipts come at once (no delay), so most beat their submit_sm_resp to the
other gateway: the run finishing in seconds (not ``receipt_hold``) shows a held receipt
is found in the shared store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from smppgw.bench.cli import options_from, run_scenarios
from smppgw.bench.kannel import INSTALL_HINT, find_kannel
from smppgw.bench.scenarios import Options, Progress
from smppgw.cli import build_parser

from support.servers import find_postgres_bin, find_redis


def test_two_gateways_on_postgres_run_the_throughput_scenario(tmp_path: Path) -> None:
    if find_postgres_bin() is None or find_redis() is None:
        pytest.skip("PostgreSQL or redis-server is not installed")
    options = Options(jobs=400, workdir=tmp_path, backend="postgres", gateways=2)
    (result,) = run_scenarios(["throughput"], options, Progress(enabled=False))
    figures = result.figures
    assert figures["backend"] == "postgres" and figures["gateways"] == 2
    assert figures["delivered"] == 400
    assert figures["seconds"] < 20, "held receipts were found in the shared store"
    assert figures["gateway_cpu_us_per_job"] > 0 and figures["database_cpu_us_per_job"] > 0
    assert {"gateway", "gateway-2", "postgres", "redis"} <= set(figures["cores_used"])


def test_two_gateways_at_a_paced_rate_count_both_gateways_and_the_store(tmp_path: Path) -> None:
    """The latency scenario (the half load of ``--peer``) on two gateways: every job
    delivered, and the CPU of the shared PostgreSQL and Redis reported beside the
    gateways'."""
    if find_postgres_bin() is None or find_redis() is None:
        pytest.skip("PostgreSQL or redis-server is not installed")
    options = Options(rate=100, latency_seconds=2, workdir=tmp_path, backend="postgres", gateways=2)
    (result,) = run_scenarios(["latency"], options, Progress(enabled=False))
    figures = result.figures
    assert figures["backend"] == "postgres" and figures["gateways"] == 2
    assert figures["delivered"] == figures["jobs"] == 200
    assert figures["gateway_cpu_us_per_job"] > 0
    assert figures["database_cpu_us_per_job"] > 0
    assert figures["redis_cpu_us_per_job"] >= 0  # a few ms of it may be under one tick
    assert {"gateway", "gateway-2", "postgres", "redis"} <= set(figures["cores_used"])


@pytest.mark.skipif(find_kannel() is None, reason=f"Kannel is not installed ({INSTALL_HINT})")
def test_beside_kannel_smppgw_s_cpu_on_postgres_counts_the_database_and_redis(
    tmp_path: Path,
) -> None:
    """``--peer kannel --backend postgres``: Kannel's CPU includes its store (bearerbox's
    spool), so smppgw's column counts its gateways, PostgreSQL and Redis, flat out and
    at half load, and says so."""
    if find_postgres_bin() is None or find_redis() is None:
        pytest.skip("PostgreSQL or redis-server is not installed")
    out = tmp_path / "out.json"
    args = ["--peer", "kannel", "--backend", "postgres", "--gateways", "2", "--jobs", "400"]
    args += ["--runs", "1", "--half-rate", "100", "--half-seconds", "1", "--no-progress"]
    args += ["--workdir", str(tmp_path / "work"), "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "smppgw", "bench", "e2e", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert "smppgw on postgres, 2 gateway(s): its CPU per job counts the gateways" in proc.stdout
    f = orjson.loads(out.read_bytes())["scenarios"]["vs kannel"]["figures"]
    assert f["smppgw_delivered"] == [400]
    for block in (f, f["half_load"]):
        assert block["smppgw_backend"] == "postgres, 2 gateway(s)"
        parts = block["smppgw_cpu_us_by_process"]
        assert set(parts) == {"gateways", "postgres", "redis"}
        # Redis's few ms over a tiny run can be under one clock tick: 0, not missing
        assert parts["gateways"] > 0 and parts["postgres"] >= 0 and parts["redis"] >= 0
        # one run a side: the medians are that run's figures, each rounded to 0.1 µs
        assert block["smppgw_cpu_us_per_job"] == pytest.approx(sum(parts.values()), abs=0.35)
    assert f["smppgw_cpu_us_by_process"]["postgres"] > 0  # 400 jobs: several ticks of it
    assert f["smppgw_cpu_us_per_job"] > f["smppgw_cpu_us_by_process"]["gateways"]


def test_more_gateways_need_the_shared_store() -> None:
    parser, _ = build_parser()
    args = parser.parse_args(["bench", "e2e", "--gateways", "2"])
    with pytest.raises(SystemExit, match="needs --backend postgres"):
        options_from(args)
