"""``smppgw bench``: performance figures, one sub-command per benchmark.

Benchmarks are listed like the top-level commands (name → module with ``configure`` and
``run``), so adding ``smppgw bench e2e`` is one line here and one new module, and a
benchmark's dependencies are imported only when it runs.
"""

from __future__ import annotations

import argparse
import importlib

#: benchmark → (module, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "codec": (
        "smppgw.commands.bench_codec",
        "PDU codec: submit_sm encodes and DLR decodes a second on one core",
    ),
    "e2e": (
        "smppgw.bench.cli",
        "end to end: broker, simulator, gateway and load as processes; throughput, "
        "latency, CPU, throttle accuracy, OTP priority, memory; side by side with Kannel "
        "(--peer kannel); PNG charts (--plot)",
    ),
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, (module_name, help_text) in BENCHMARKS.items():
        bench_parser = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name).configure(bench_parser)


def run(args: argparse.Namespace) -> int:
    if not args.benchmark:
        print("usage: smppgw bench {" + ",".join(BENCHMARKS) + "} [options]")
        return 2
    module = importlib.import_module(BENCHMARKS[args.benchmark][0])
    code: int = module.run(args)
    return code
