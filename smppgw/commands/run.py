"""``smppgw run --config FILE``: the gateway daemon."""

from __future__ import annotations

import argparse
import sys

from smppgw.config import ConfigError
from smppgw.config.loader import load_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        default="/etc/smppgw/smppgw.yaml",
        help="YAML config file (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"smppgw: {args.config}: {exc}", file=sys.stderr)
        return 2
    from smppgw.gateway import run_gateway

    return run_gateway(config, config_path=args.config)
