"""``smppgw ctl [--config FILE | --socket PATH] [--json] COMMAND ...``: ask the running
gateway over its control socket (``ctl.socket``, :mod:`smppgw.ops.ctl`).

Output is for people by default; ``--json`` prints the gateway's answer as one JSON
document for scripts. Exit status: 0 done, 1 the gateway refused or could not do it,
2 a usage problem or no gateway to talk to.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
from typing import Any

from smppgw.config import ConfigError, CtlConfig

#: Seconds to wait for an answer (a reload drains changed carriers: up to drain_timeout).
TIMEOUT = 60.0


def configure(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE", help="the gateway's config (for ctl.socket)")
    where.add_argument("--socket", metavar="PATH", help=f"default {CtlConfig().socket}")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    sub = parser.add_subparsers(dest="ctl_command", metavar="COMMAND", required=True)
    sub.add_parser("status", help="carriers, binds, lanes, tps in use, held jobs, outbox")
    for name, text in (("pause", "stop sending on a carrier (binds stay up)"),
                       ("resume", "send on a paused carrier again")):  # fmt: skip
        sub.add_parser(name, help=text).add_argument("carrier", metavar="CARRIER")
    reload = sub.add_parser("reload", help="re-read the config file (what SIGHUP does)")
    reload.set_defaults(ctl_args={})
    jobs = sub.add_parser("jobs", help="list, show, cancel or requeue jobs")
    action = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    listing = action.add_parser("list", help="the newest jobs, filtered")
    listing.add_argument("--carrier")
    listing.add_argument(
        "--state", choices=["queued", "sending", "in_flight", "submitted", "final"]
    )
    listing.add_argument("--lane", choices=["high", "normal", "low"])
    listing.add_argument("--limit", type=int, default=50)
    action.add_parser("show", help="one job").add_argument("id")
    action.add_parser("cancel", help="end a queued job 'cancelled'").add_argument("id")
    requeue = action.add_parser(
        "requeue", help="send a failed/unknown_outcome job again (only if it never left)"
    )
    requeue.add_argument("id")
    requeue.add_argument(
        "--confirm-never-sent",
        action="store_true",
        help="you checked that the SMSC never got it (else it may arrive twice)",
    )


def request_of(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON request the command line stands for."""
    command: str = args.ctl_command
    if command in ("pause", "resume"):
        return {"command": command, "args": {"carrier": args.carrier}}
    if command != "jobs":
        return {"command": command, "args": {}}
    action: str = args.jobs_command
    if action == "list":
        wanted = {"carrier": args.carrier, "state": args.state, "lane": args.lane}
        found = {k: v for k, v in wanted.items() if v is not None}
        return {"command": "jobs.list", "args": {**found, "limit": args.limit}}
    found = {"id": args.id}
    if action == "requeue":
        found["confirm_never_sent"] = args.confirm_never_sent
    return {"command": f"jobs.{action}", "args": found}


def socket_path(args: argparse.Namespace) -> str | None:
    if args.socket:
        return str(args.socket)
    if args.config:
        from smppgw.config.loader import load_config

        return load_config(args.config).ctl.socket
    return CtlConfig().socket


def ask(path: str, request: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request, read one answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        # Refused at once (uid not allowed): the refusal is waiting to be read.
        with contextlib.suppress(BrokenPipeError):
            sock.sendall(json.dumps(request).encode() + b"\n")
        with sock.makefile("rb") as answers:
            line = answers.readline()
    if not line:
        raise ConnectionError("the gateway closed the connection without an answer")
    answer: dict[str, Any] = json.loads(line)
    return answer


def run(args: argparse.Namespace) -> int:
    try:
        path = socket_path(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return 2
    if path is None:
        print("smppgw ctl: ctl.socket is off (null) in this config", file=sys.stderr)
        return 2
    request = request_of(args)
    try:
        answer = ask(path, request)
    except (OSError, ValueError) as exc:
        print(f"smppgw ctl: {path}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    elif not answer.get("ok"):
        print(f"smppgw ctl: {answer.get('error')}", file=sys.stderr)
    else:
        print(render(request["command"], answer.get("result")))
    return 0 if answer.get("ok") else 1


# ---------------------------------------------------------------------- for people


def render(command: str, result: Any) -> str:
    if command == "status":
        return _status(result)
    if command == "jobs.list":
        return "\n".join(_job_line(job) for job in result) if result else "no jobs"
    if command.startswith("jobs."):
        return "\n".join(f"{key:>17}: {_show(value)}" for key, value in result.items())
    if command in ("pause", "resume"):
        state = "paused" if result["paused"] else "sending"
        return f"{result['carrier']}: {state}" + ("" if result["changed"] else " (already)")
    return f"reloaded; carriers: {', '.join(result['carriers'])}"


def _status(status: dict[str, Any]) -> str:
    lines = [
        f"{'carrier':<16}{'state':<10}{'binds':>7}{'tps':>13}{'window':>10}"
        f"{'high':>8}{'normal':>8}{'low':>8}{'in mem':>7}"
    ]
    for name, c in status["carriers"].items():
        if c["paused"]:
            state = "paused"
        elif c["binds_up"] == 0:
            state = "down"
        else:
            state = "throttled" if c["throttled"] else "up"
        q = c["queued"]
        lines.append(
            f"{name:<16}{state:<10}{c['binds_up']:>3}/{c['binds_total']:<3}"
            f"{c['tps_in_use']:>6}/{c['tps_limit']:<6g}"
            f"{c['window_in_use']:>5}/{c['window_size']:<4}"
            f"{q['high']:>8}{q['normal']:>8}{q['low']:>8}{c['in_memory']:>7}"
        )
    held = ", ".join(f"{t} {n}" for t, n in status["held"].items()) or "none"
    scheduled = status.get("scheduled") or {}
    by_reason = ", ".join(f"{r} {n}" for r, n in sorted(scheduled.items())) or "none"
    lines.append(
        f"outbox {status['outbox']}, dead events {status['dead_events']}, "
        f"held at intake {status['held_total']} ({held}), "
        f"scheduled {sum(scheduled.values())} ({by_reason}), "
        f"mqtt {_mqtt_state(status)}"
    )
    return "\n".join(lines)


def _mqtt_state(status: dict[str, Any]) -> str:
    """``connected``, or which of the gateway's connections is down (an older gateway
    reports only ``mqtt_connected``)."""
    if status["mqtt_connected"]:
        return "connected"
    down = [name for name, up in status.get("mqtt_connections", {}).items() if not up]
    return f"NOT connected ({', '.join(down)})" if down else "NOT connected"


def _job_line(job: dict[str, Any]) -> str:
    status = job["status"] or job["state"]
    if job["error_code"]:
        status += f" ({job['error_code']})"
    carrier = job["carrier"] or "-"
    return f"{job['received_at']}  {job['job_id']:<30} {carrier:<12} {job['lane']:<7}{status}"


def _show(value: Any) -> str:
    return "-" if value is None or value == [] else str(value)
