"""The ``smppgw`` command.

Each sub-command lives in its own module with two functions, ``configure(parser)`` and
``run(args) -> int``; this file only lists them, so adding a command never touches another
command's code, and ``smppgw --help`` does not import the gateway's heavy dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("smppgw.commands.bench", "run benchmarks (codec)"),
    "check-config": ("smppgw.commands.check_config", "validate a config file and print a summary"),
    "consent": (
        "smppgw.commands.consent",
        "the Do-Not-Call list: list, add (opt out), remove, import CSV, export",
    ),
    "ctl": ("smppgw.commands.ctl", "ask the running gateway: status, pause, resume, jobs, reload"),
    "dead-events": (
        "smppgw.commands.dead_events",
        "list the events set aside because the broker would not take them",
    ),
    "demo": (
        "smppgw.commands.demo",
        "run a demo: simulator, broker, gateway and real-looking jobs",
    ),
    "migrate": (
        "smppgw.commands.migrate",
        "bring the store's schema up to date (SQLite or PostgreSQL), then exit",
    ),
    "routes": (
        "smppgw.commands.routes",
        "the ported-number cache: lookup, list, import a CSV, forget a number",
    ),
    "run": ("smppgw.commands.run", "run the gateway daemon"),
    "parts": ("smppgw.commands.parts", "show how a text is encoded and split into SMS parts"),
    "sim": ("smppgw.commands.sim", "run the SMSC simulator"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, str]]:
    parser = argparse.ArgumentParser(prog="smppgw", description="SMPP 3.4 gateway daemon")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, str] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(command_parser)
        modules[name] = module_name
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(modules[args.command])
    code: int = module.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
