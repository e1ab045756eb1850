"""``smppgw bench e2e``: the end-to-end benchmark (see :mod:`smppgw.bench`).

smppgw bench e2e                      # every scenario, full size (~5 minutes)
smppgw bench e2e --quick              # smaller runs (~1 minute)
smppgw bench e2e --scenario throughput,latency --jobs 20000 --json out.json
smppgw bench e2e --peer kannel        # smppgw and Kannel side by side (20,000 jobs, 3 runs),
                                      # flat out and at half load (10 s each)
smppgw bench e2e --plot charts/       # also PNG charts of what ran (needs matplotlib)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from smppgw.bench.compare import compare, format_side_by_side
from smppgw.bench.kannel import INSTALL_HINT as KANNEL_INSTALL_HINT
from smppgw.bench.kannel import KannelBinaries, find_kannel
from smppgw.bench.plot import plotting_available, write_charts
from smppgw.bench.report import as_json, format_results
from smppgw.bench.scenarios import SCENARIOS, Options, Progress, ScenarioResult

#: Scenarios that run with ``--backend postgres`` / ``--gateways N``.
CLUSTER_SCENARIOS = frozenset({"throughput", "latency"})
#: The workload of issue #13's side-by-side figures.
PEER_JOBS = 20_000
#: Kannel drops a receipt that overtakes its submit_sm_resp (it arrives on the other bind
#: before the response is processed: "DLR ... not found"); carriers' receipts come seconds
#: later. 0.2 s: every receipt matched in our runs, and Kannel is cheaper at 0.2 s than at
#: 1 s (its waiting DLRs are fewer). Both sides get the same delay, and both rates leave
#: it out of the wall time.
PEER_RECEIPT_DELAY = 0.2


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
    parser.add_argument(
        "--jobs", type=int, metavar="N", help="throughput jobs (50,000; with --peer 20,000)"
    )
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
    parser.add_argument(
        "--store-writer",
        choices=("process", "thread", "auto"),
        help="the gateway's store.writer (default: the gateway's own default)",
    )
    parser.add_argument(
        "--receipt-delay",
        type=float,
        metavar="S",
        help="the SMSC's delay before each receipt (0; with --peer: 0.2)",
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
    parser.add_argument(
        "--peer",
        choices=("kannel",),
        help="also run the throughput workload through this gateway (bearerbox and smsbox "
        "on PATH) and print both side by side; without --scenario, only the comparison",
    )
    parser.add_argument(
        "--runs", type=int, metavar="N", help="interleaved runs of each side with --peer (3)"
    )
    parser.add_argument(
        "--half-rate",
        type=float,
        metavar="JOBS/S",
        help="with --peer: the half-load rate both sides are fed at (default: half the "
        "lower of the two flat-out rates measured in the same invocation)",
    )
    parser.add_argument(
        "--half-seconds",
        type=float,
        metavar="S",
        help="with --peer: seconds each half-load run feeds its side (10)",
    )
    parser.add_argument(
        "--kannel-spool",
        type=Path,
        metavar="DIR",
        help="where Kannel's spool store goes (default: the run's directory, beside "
        "smppgw's store); e.g. /dev/shm to leave the disk out of Kannel's figures",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="DIR", help="write PNG charts to DIR (needs matplotlib)"
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgres"),
        help="the gateways' store (sqlite); postgres: a PostgreSQL and a Redis of the run's "
        "own, intake through a shared subscription (throughput and latency scenarios)",
    )
    parser.add_argument(
        "--gateways",
        type=int,
        metavar="N",
        help="gateway processes sharing the work (1; more needs --backend postgres)",
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
        "store_writer",
        "receipt_delay",
        "kannel_spool",
        "half_rate",
        "half_seconds",
        "backend",
        "gateways",
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
    if options.half_rate is not None and options.half_rate <= 0:
        raise SystemExit("smppgw bench e2e: --half-rate must be > 0")
    if options.half_seconds <= 0:
        raise SystemExit("smppgw bench e2e: --half-seconds must be > 0")
    if options.receipt_delay < 0:
        raise SystemExit("smppgw bench e2e: --receipt-delay must be >= 0")
    if options.gateways < 1:
        raise SystemExit("smppgw bench e2e: --gateways must be >= 1")
    if options.gateways > 1 and options.backend != "postgres":
        raise SystemExit("smppgw bench e2e: --gateways above 1 needs --backend postgres")
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


def _peer_binaries(args: argparse.Namespace) -> KannelBinaries | None:
    """Kannel's boxes when ``--peer kannel`` asked for them; SystemExit(2) when missing."""
    if args.peer is None:
        return None
    binaries = find_kannel()
    if binaries is None:
        print(
            "smppgw bench e2e: --peer kannel needs Kannel's bearerbox and smsbox on PATH "
            f"(Debian/Ubuntu: {KANNEL_INSTALL_HINT})",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return binaries


def _check_plotting(args: argparse.Namespace) -> None:
    if args.plot is not None and not plotting_available():
        print(
            "smppgw bench e2e: --plot needs matplotlib (pip install 'smppgw[bench]')",
            file=sys.stderr,
        )
        raise SystemExit(2)


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    binaries = _peer_binaries(args)
    _check_plotting(args)
    runs = 3 if args.runs is None else args.runs
    if runs < 1:
        raise SystemExit("smppgw bench e2e: --runs must be >= 1")
    if binaries is not None and args.jobs is None and not args.quick:
        options.jobs = PEER_JOBS
    if binaries is not None and args.receipt_delay is None:
        options.receipt_delay = PEER_RECEIPT_DELAY
    names = args.scenario or ([] if binaries is not None else list(SCENARIOS))
    names = [n for n in SCENARIOS if n in names]  # dependency order: throughput first
    if options.backend != "sqlite" or options.gateways > 1:
        if args.scenario is None:
            names = [n for n in names if n in CLUSTER_SCENARIOS]
        elif not set(names) <= CLUSTER_SCENARIOS:
            raise SystemExit(
                "smppgw bench e2e: --backend postgres / --gateways run only "
                + ", ".join(sorted(CLUSTER_SCENARIOS))
            )
    progress = Progress(enabled=not args.no_progress)
    results: list[ScenarioResult] = []
    if binaries is not None:
        started = time.monotonic()
        progress.line(f"== vs {args.peer}")
        comparison = compare(options, progress, binaries, runs)
        comparison.seconds = time.monotonic() - started
        results.append(comparison)
    results += run_scenarios(names, options, progress)
    print(format_results(results))
    if binaries is not None:
        print()
        print(format_side_by_side(results[0]))
    if args.plot is not None:
        for path in write_charts(results, args.plot):
            print(f"chart: {path}")
    if args.json:
        opts: dict[str, Any] = {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(options).items()
        }
        opts["quick"] = bool(args.quick)
        opts["scenarios"] = names
        opts["peer"] = args.peer
        opts["runs"] = runs if binaries is not None else None
        data = as_json(results, opts)
        Path(args.json).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    ok = all(c.ok for r in results for c in r.checks)
    if args.check and not ok:
        print("smppgw bench e2e: a target was missed", file=sys.stderr)
        return 1
    return 0
