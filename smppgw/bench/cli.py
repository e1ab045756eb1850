"""``smppgw bench e2e``: the end-to-end benchmark (see :mod:`smppgw.bench`).

smppgw bench e2e                      # every scenario, full size (~5 minutes)
smppgw bench e2e --quick              # smaller runs (~1 minute)
smppgw bench e2e --scenario throughput,latency --jobs 20000 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from smppgw.bench.report import as_json, format_results
from smppgw.bench.scenarios import SCENARIOS, Options, Progress, ScenarioResult


def _scenarios(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or text!r}; choose from {', '.join(SCENARIOS)}"
        )
    return names


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        type=_scenarios,
        action="extend",
        metavar="NAME[,NAME]",
        help=f"run only these ({', '.join(SCENARIOS)}); default: all",
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (~1 minute in all)")
    parser.add_argument("--jobs", type=int, metavar="N", help="throughput jobs (50,000)")
    parser.add_argument(
        "--rate", type=float, metavar="JOBS/S", help="latency load (default: half the capacity)"
    )
    parser.add_argument(
        "--fast-tps", type=float, metavar="TPS", help="the unthrottled carrier's tps (100,000)"
    )
    parser.add_argument(
        "--commit-interval",
        type=float,
        metavar="S",
        help="the gateway's store.commit_interval (default: the gateway's own default)",
    )
    parser.add_argument("--latency-seconds", type=float, metavar="S", help="(20)")
    parser.add_argument("--throttle-seconds", type=float, metavar="S", help="(60)")
    parser.add_argument("--otp-backlog", type=int, metavar="N", help="campaign size (100,000)")
    parser.add_argument("--memory-jobs", type=int, metavar="N", help="jobs queued (1,000,000)")
    parser.add_argument("--workdir", type=Path, help="where the runs' files go (a tmp dir)")
    parser.add_argument("--keep", action="store_true", help="keep configs, logs and stores")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="py-spy the gateway; profiles go to DIR"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress line")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a figure misses its target (for CI)"
    )


def options_from(args: argparse.Namespace) -> Options:
    options = Options.quick() if args.quick else Options()
    for name in (
        "jobs",
        "rate",
        "latency_seconds",
        "throttle_seconds",
        "otp_backlog",
        "memory_jobs",
        "workdir",
        "profile",
        "fast_tps",
        "commit_interval",
    ):
        value = getattr(args, name, None)
        if value is not None:
            setattr(options, name, value)
    options.keep = bool(args.keep)
    for name in ("jobs", "otp_backlog", "memory_jobs"):
        if getattr(options, name) < 1:
            raise SystemExit(f"smppgw bench e2e: --{name.replace('_', '-')} must be >= 1")
    if options.rate is not None and options.rate <= 0:
        raise SystemExit("smppgw bench e2e: --rate must be > 0")
    return options


def run_scenarios(names: list[str], options: Options, progress: Progress) -> list[ScenarioResult]:
    results: list[ScenarioResult] = []
    for name in names:
        started = time.monotonic()
        progress.line(f"== {name}")
        result = SCENARIOS[name](options, progress)
        result.seconds = time.monotonic() - started
        verdicts = ", ".join(
            f"{c.name}: {c.value:,.1f} {c.unit} {'ok' if c.ok else 'MISSED'}" for c in result.checks
        )
        progress.line(f"   {verdicts}")
        results.append(result)
    return results


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    names = args.scenario or list(SCENARIOS)
    names = [n for n in SCENARIOS if n in names]  # dependency order: throughput first
    progress = Progress(enabled=not args.no_progress)
    results = run_scenarios(names, options, progress)
    print(format_results(results))
    if args.json:
        opts: dict[str, Any] = {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(options).items()
        }
        opts["quick"] = bool(args.quick)
        opts["scenarios"] = names
        data = as_json(results, opts)
        Path(args.json).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    ok = all(c.ok for r in results for c in r.checks)
    if args.check and not ok:
        print("smppgw bench e2e: a target was missed", file=sys.stderr)
        return 1
    return 0
