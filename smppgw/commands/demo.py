"""``smppgw demo``: simulator, broker, gateway and a shop's traffic, with a summary.

The first command a new user runs, so it must work on a bare machine (it starts its own
mosquitto when none is listening on 1883) and must leave nothing behind, even on Ctrl-C.
Its exit code says whether every job reached its expected final status, which makes it a
smoke test as well (``--quick`` for CI).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        metavar="HOST:PORT",
        help="MQTT broker to use (default: 127.0.0.1:1883 if one answers, else a mosquitto "
        "started for the run on a free port); 'own' always starts one",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smaller burst (40 reminders): for tests and CI"
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the summary, leave everything up until Ctrl-C (try mosquitto_pub)",
    )
    parser.add_argument("--burst", type=int, metavar="N", help="bulk reminders to send")
    parser.add_argument(
        "--config", metavar="FILE", type=Path, help="gateway config (default: conf/demo.yaml)"
    )
    parser.add_argument(
        "--sim-config",
        metavar="FILE",
        type=Path,
        help="simulator config (default: conf/sim-demo.yaml)",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="give up waiting for final statuses after S s"
    )


def _broker(text: str | None) -> tuple[str, int] | str | None:
    if text is None or text == "own":
        return text
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--broker {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def run(args: argparse.Namespace) -> int:
    from smppgw.config import LogConfig, LogFormat
    from smppgw.demo.runner import Demo, Options
    from smppgw.ops.logs import setup_logging

    try:
        broker = _broker(args.broker)
    except ValueError as exc:
        print(f"smppgw demo: {exc}", file=sys.stderr)
        return 2
    if args.burst is not None and args.burst < 2:
        print("smppgw demo: --burst must be at least 2", file=sys.stderr)
        return 2
    options = Options(
        broker=broker,
        quick=args.quick,
        keep_running=args.keep_running,
        burst=args.burst,
        gateway_config=args.config,
        sim_config=args.sim_config,
        timeout=args.timeout,
    )
    # The demo's own MQTT client logs only what needs attention; its output is the show.
    setup_logging(LogConfig(level="warning", format=LogFormat.CONSOLE))

    async def main() -> int:
        demo = Demo(options, sys.stdout)
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def interrupt(sig: signal.Signals) -> None:
            if demo.interrupted is not None:
                print("still stopping, please wait", flush=True)
                return
            demo.interrupted = sig.name
            if task is not None:
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, interrupt, sig)
        return await demo.run()

    return asyncio.run(main())
