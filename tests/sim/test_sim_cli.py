"""``smppgw sim`` as a process, its flags and its YAML file."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from smppgw.sim.cli import configs_from_args, configure
from smppgw.sim.config import SimConfigError, configs_from_mapping, load_yaml
from smppgw.smpp.constants import Status

from sim.client import RawClient

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(argv)


def start(*argv: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "smppgw", "sim", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    lines = []
    for _ in range(10):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if "control on" in line or ("listening" in line and "--control" not in argv):
            break
    return proc, lines


async def test_process_serves_and_exits_0_on_sigterm() -> None:
    proc, lines = start("--listen", "127.0.0.1:0", "--accounts", "shop:pw:10", "--name", "viettel")
    try:
        match = re.match(r"sim viettel listening on 127\.0\.0\.1:(\d+)", lines[0])
        assert match, lines
        client = await RawClient.connect(int(match.group(1)))
        assert (await client.bind("shop", "pw")).status == 0
        assert (await client.bind("shop", "pw")).status == Status.ESME_RALYBND
        proc.send_signal(signal.SIGTERM)
        unbind = await client.expect(lambda p: p.command_id == 6, timeout=5)
        client.send(unbind.response())
        assert await client.closed(timeout=5)
        await client.close()
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_process_with_yaml_runs_several_smscs(tmp_path: Path) -> None:
    config = tmp_path / "sims.yaml"
    config.write_text(
        "defaults:\n"
        "  accounts: [{system_id: shop, password: pw}]\n"
        "smscs:\n"
        "  viettel: {listen: '127.0.0.1:0', control: '127.0.0.1:0'}\n"
        "  mobifone: {listen: '127.0.0.1:0', id_format: decimal}\n"
    )
    proc, lines = start("--config", str(config))
    try:
        for _ in range(2):
            if len([line for line in lines if "listening" in line]) >= 2:
                break
            assert proc.stdout is not None
            lines.append(proc.stdout.readline().strip())
        ports = dict(re.findall(r"sim (\w+) listening on 127\.0\.0\.1:(\d+)", "\n".join(lines)))
        assert set(ports) == {"viettel", "mobifone"}, lines
        control = re.search(r"sim viettel control on http://127\.0\.0\.1:(\d+)", "\n".join(lines))
        assert control, lines
        client = await RawClient.connect(int(ports["mobifone"]))
        await client.bind("shop", "pw")
        resp = await client.submit()
        assert resp.message_id.isdigit()  # type: ignore[attr-defined]
        await client.close()

        def stats() -> dict[str, object]:
            url = f"http://127.0.0.1:{control.group(1)}/stats"
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]

        assert (await asyncio.to_thread(stats))["name"] == "viettel"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_flags_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "smppgw", "sim", "--receipt-mix", "DELIVERED:1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2 and "unknown state 'DELIVERED'" in result.stderr


def test_flags_to_config() -> None:
    (config,) = configs_from_args(
        parse(
            "--listen", ":2999",
            "--accounts", "a:x:5,b:y",
            "--control", "127.0.0.1:0",
            "--id-format", "decimal",
            "--receipt-delay", "0.5",
            "--receipt-mix", "DELIVRD:0.95,UNDELIV:0.05",
            "--receipt-text-only",
            "--reject-fraction", "0.1",
            "--reject-status", "0x58",
            "--drop-after", "7",
            "--arrival-jitter", "0.008",
            "--enquire-link", "0",
        )
    )  # fmt: skip
    assert (config.host, config.port, config.control_port) == ("127.0.0.1", 2999, 0)
    assert [(a.system_id, a.password, a.tps) for a in config.accounts] == [
        ("a", "x", 5.0),
        ("b", "y", None),
    ]
    assert config.id_format == "decimal" and config.receipt_delay == 0.5
    assert config.receipt_mix == {"DELIVRD": 0.95, "UNDELIV": 0.05}
    assert config.receipt_text_only and not config.receipt_id_other_base
    assert config.faults.reject_fraction == 0.1
    assert config.faults.reject_status == Status.ESME_RTHROTTLED
    assert config.faults.drop_after_submits == 7 and config.enquire_link_interval == 0
    assert config.faults.arrival_jitter == 0.008
    assert "x" not in repr(config.accounts[0]).replace("max_binds", "")


def test_config_flag_excludes_smsc_flags() -> None:
    with pytest.raises(SimConfigError, match="--listen"):
        configs_from_args(parse("--config", "x.yaml", "--listen", ":1"))
    with pytest.raises(SimConfigError, match="--arrival-jitter"):
        configs_from_args(parse("--config", "x.yaml", "--arrival-jitter", "0.01"))


def test_demo_yaml_loads() -> None:
    configs = load_yaml(ROOT / "conf" / "sim-demo.yaml")
    assert [c.name for c in configs] == ["viettel", "vinaphone", "mobifone"]
    assert len({c.port for c in configs}) == 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"smscs": {"v": {"lisen": ":1"}}}, "smscs.v.lisen: unknown key; did you mean listen?"),
        ({"smscs": {"v": {"accounts": [{"system_id": "a"}]}}}, "password are required"),
        ({"smscs": {"v": {"accounts": [{"system_id": "a", "password": "p", "tsp": 1}]}}}, "tps"),
        ({"smscs": {"v": {"faults": {"reject_fraction": 5}}}}, "reject_fraction"),
        ({"smscs": {"v": {"id_format": "octal"}}}, "id_format"),
        ({"smscs": {"v": {"receipt_mix": {"LOST": 1}}}}, "unknown state"),
        ({"smsc": {}}, "top-level"),
        ({"smscs": {}}, "smscs"),
    ],
)
def test_yaml_errors_name_the_setting(raw: object, message: str) -> None:
    with pytest.raises(SimConfigError, match=re.escape(message)):
        configs_from_mapping(raw)


_GC_PROBE = """
import asyncio, gc, json, weakref
from smppgw.sim.cli import FREEZE_EVERY, configs_from_args, configure, serve
import argparse
parser = argparse.ArgumentParser()
configure(parser)
configs = configs_from_args(parser.parse_args(["--listen", "127.0.0.1:0", "--accounts", "a:b:10"]))

class Node:
    pass

async def main():
    task = asyncio.ensure_future(serve(configs))
    await asyncio.sleep(FREEZE_EVERY)
    frozen = gc.get_freeze_count()
    kept = [Node() for _ in range(5000)]  # what a simulator keeps: accepted submits
    cycle = Node()
    cycle.me = cycle
    dead = weakref.ref(cycle)
    del cycle
    junk = [[] for _ in range(2000)]  # enough allocations for a young collection
    del junk
    young_cycle_collected = dead() is None
    await asyncio.sleep(FREEZE_EVERY * 3)
    print(json.dumps({
        "threshold": gc.get_threshold(),
        "frozen_while_serving": gc.get_freeze_count() - frozen,
        "kept": len(kept),
        "young_cycle_collected": young_cycle_collected,
    }))
    task.cancel()

asyncio.run(main())
"""


def test_serving_sim_freezes_what_it_keeps_and_still_collects_young_garbage() -> None:
    """While serving, what the simulator keeps moves into the collector's permanent
    generation within a tick, so no collection walks it (a full one over the kept submits
    paused its reads ~30 ms mid-benchmark, docs/performance.md step 111), and a young
    reference cycle is still collected at the default thresholds."""
    out = subprocess.run(
        [sys.executable, "-c", _GC_PROBE], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["frozen_while_serving"] >= probe["kept"]
    assert probe["young_cycle_collected"]
    assert probe["threshold"] == [700, 10, 10]
