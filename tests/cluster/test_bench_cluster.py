"""``smppgw bench e2e --backend postgres --gateways 2``, tiny: both gateways on their own
PostgreSQL and Redis, every job delivered, CPU reported for the gateways and the
database. Receipts come at once (no delay), so most beat their submit_sm_resp to the
other gateway: the run finishing in seconds (not ``receipt_hold``) shows a held receipt
is found in the shared store."""

from __future__ import annotations

from pathlib import Path

import pytest

from smppgw.bench.cli import options_from, run_scenarios
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


def test_more_gateways_need_the_shared_store() -> None:
    parser, _ = build_parser()
    args = parser.parse_args(["bench", "e2e", "--gateways", "2"])
    with pytest.raises(SystemExit, match="needs --backend postgres"):
        options_from(args)
