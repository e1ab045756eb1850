"""``smppgw check-config FILE``: validate a config before a deploy, not at 3 a.m. on restart.

Exit 0 and a summary (carriers, routes, topics; secrets only as ``***`` or their origin) when
the file is usable; exit 2 with every problem on stderr, one per line, when it is not, so a
CI job or an Ansible handler can gate on it.
"""

from __future__ import annotations

import argparse
import sys

from smppgw.config import ConfigError, load_config, summary


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="YAML config file")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        count = len(exc.problems)
        print(f"{args.file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK")
    print(summary(config))
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
