"""``smppgw sim``: run one SMSC from flags, or several from a YAML file, until a signal.

    smppgw sim --listen 127.0.0.1:2775 --accounts shop:secret:50 --control 127.0.0.1:8775
    smppgw sim --config conf/sim-demo.yaml

Prints one line per listener once it is bound (scripts wait for it), then serves until
SIGINT or SIGTERM, unbinds its clients and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Sequence

from smppgw.sim.config import (
    Faults,
    SimConfig,
    SimConfigError,
    load_yaml,
    parse_accounts,
    parse_listen,
    parse_mix,
    parse_status,
)
from smppgw.sim.rejects import parse_entries
from smppgw.sim.server import Simulator

#: Flags that describe one SMSC, so cannot be combined with --config.
_SMSC_FLAGS = (
    "listen",
    "accounts",
    "control",
    "id_format",
    "receipt_delay",
    "receipt_mix",
    "receipt_text_only",
    "receipt_id_other_base",
    "enquire_link",
    "name",
    "reject_fraction",
    "reject_status",
    "response_delay",
    "no_response_fraction",
    "drop_after",
    "refuse_binds_for",
    "arrival_jitter",
    "keep_submits",
    "reject_dest",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="several SMSCs from a YAML file")
    parser.add_argument("--listen", metavar="HOST:PORT", help="SMPP listen (127.0.0.1:2775)")
    parser.add_argument(
        "--accounts", metavar="ID:PASSWORD[:TPS],...", help="ESME accounts (test:test)"
    )
    parser.add_argument("--control", metavar="HOST:PORT", help="HTTP control port (off)")
    parser.add_argument("--log", metavar="FILE", help="JSON-lines PDU log")
    parser.add_argument("--name", help="SMSC name, in bind responses and logs (sim)")
    parser.add_argument("--id-format", choices=("hex", "decimal"), help="message ids (hex)")
    parser.add_argument("--receipt-delay", type=float, metavar="S", help="receipt delay (0)")
    parser.add_argument("--receipt-mix", metavar="STATE:W,...", help="receipt states (DELIVRD:1)")
    parser.add_argument(
        "--receipt-text-only",
        action="store_true",
        default=None,
        help="receipts without receipted_message_id / message_state TLVs",
    )
    parser.add_argument(
        "--receipt-id-other-base",
        action="store_true",
        default=None,
        help="receipts carry the id in the other base (decimal for hex ids)",
    )
    parser.add_argument(
        "--enquire-link", type=float, metavar="S", help="enquire_link idle clients (30; 0: off)"
    )
    parser.add_argument(
        "--keep-submits", type=int, metavar="N", help="accepted submits kept for GET /submits"
    )
    faults = parser.add_argument_group("faults (also settable at run time: POST /config)")
    faults.add_argument("--reject-fraction", type=float, metavar="F")
    faults.add_argument("--reject-status", metavar="STATUS", help="name or number")
    faults.add_argument("--response-delay", type=float, metavar="S")
    faults.add_argument("--no-response-fraction", type=float, metavar="F")
    faults.add_argument("--drop-after", type=int, metavar="N", help="close after N submits")
    faults.add_argument("--refuse-binds-for", type=float, metavar="S")
    faults.add_argument(
        "--arrival-jitter",
        type=float,
        metavar="S",
        help="the rate limiter sees each submit up to S seconds late (a front-end queue)",
    )
    add_reject_dest(parser)


def add_reject_dest(parser: argparse.ArgumentParser) -> None:
    """``--reject-dest``: imitate ported numbers (changeable at run time: /reject-dest)."""
    parser.add_argument(
        "--reject-dest",
        action="append",
        metavar="PREFIX:STATUS",
        help="refuse submit_sm to destinations starting with PREFIX (an exact number is a "
        "prefix too; the longest wins) with STATUS (0x0B, 11 or ESME_RINVDSTADR), no "
        "receipt; repeatable; run time: POST/DELETE /reject-dest on the control port",
    )


def configs_from_args(args: argparse.Namespace) -> list[SimConfig]:
    if args.config:
        given = [f"--{name.replace('_', '-')}" for name in _SMSC_FLAGS if getattr(args, name)]
        if given:
            raise SimConfigError(f"--config describes the SMSCs; drop {', '.join(given)}")
        configs = load_yaml(args.config)
        for config in configs:
            if args.log and not config.pdu_log:
                config.pdu_log = args.log
        return configs
    config = SimConfig(name=args.name or "sim")
    config.host, config.port = parse_listen(args.listen or "127.0.0.1:2775")
    if args.accounts:
        config.accounts = parse_accounts(args.accounts)
    if args.control:
        config.control_host, config.control_port = parse_listen(args.control)
    config.pdu_log = args.log
    if args.id_format:
        config.id_format = args.id_format
    if args.receipt_delay is not None:
        config.receipt_delay = args.receipt_delay
    if args.receipt_mix:
        config.receipt_mix = parse_mix(args.receipt_mix)
    config.receipt_text_only = bool(args.receipt_text_only)
    config.receipt_id_other_base = bool(args.receipt_id_other_base)
    if args.enquire_link is not None:
        config.enquire_link_interval = args.enquire_link
    if args.keep_submits is not None:
        config.keep_submits = args.keep_submits
    config.reject_dest = parse_entries(args.reject_dest or ())
    config.faults = Faults(
        reject_fraction=args.reject_fraction or 0.0,
        reject_status=parse_status(args.reject_status)
        if args.reject_status
        else Faults().reject_status,
        response_delay=args.response_delay or 0.0,
        no_response_fraction=args.no_response_fraction or 0.0,
        drop_after_submits=args.drop_after,
        refuse_binds_for=args.refuse_binds_for or 0.0,
        arrival_jitter=args.arrival_jitter or 0.0,
    )
    config.validate()
    return [config]


async def serve(configs: Sequence[SimConfig]) -> None:
    """Run the simulators until SIGINT / SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    sims: list[Simulator] = []
    try:
        for config in configs:
            sim = Simulator(config)
            await sim.start()
            sims.append(sim)
            accounts = ", ".join(a.system_id for a in config.accounts)
            print(
                f"sim {config.name} listening on {config.host}:{sim.port} (accounts: {accounts})",
                flush=True,
            )
            if sim.control_port is not None:
                print(
                    f"sim {config.name} control on http://{config.control_host}:{sim.control_port}",
                    flush=True,
                )
        keeper = asyncio.ensure_future(_freeze_kept())
        try:
            await stop.wait()
        finally:
            keeper.cancel()
    finally:
        await asyncio.gather(*(sim.stop() for sim in sims), return_exceptions=True)


#: Seconds between two ``gc.freeze()`` of what the simulator keeps.
FREEZE_EVERY = 0.25


async def _freeze_kept() -> None:
    """Collect once, then every ``FREEZE_EVERY`` move every object the collector tracks
    into its permanent generation (``gc.freeze()``: a list splice, no walk), so that no
    collection walks the submits the simulator keeps (``keep_submits``, for the control
    API) while the young generations, and their garbage, stay collected as usual.

    Why: a full collection walked them all, ~30 ms at 17,000 kept and growing with them
    (at the gateway's ``collect_seldom`` thresholds a young one did, ~20 ms): no
    submit_sm was read meanwhile, and the pause landed in a benchmark's publish →
    submit_sm tail (docs/performance.md, step 111). The price: a reference cycle alive
    at a tick that dies later (a closed connection's objects) is never collected, a test
    tool's trade, not one for the gateway.
    """
    gc.collect()
    while True:
        gc.freeze()
        await asyncio.sleep(FREEZE_EVERY)


def run(args: argparse.Namespace) -> int:
    try:
        configs = configs_from_args(args)
    except SimConfigError as exc:
        print(f"smppgw sim: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(configs))
    except OSError as exc:  # a port in use, a log file that cannot be opened
        print(f"smppgw sim: {exc}", file=sys.stderr)
        return 1
    return 0
