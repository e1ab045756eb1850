"""``smppgw demo`` as a user runs it: a real process, a real mosquitto, real simulators.

Each test reads the demo's own output (what a person sees) and checks the state it leaves
behind: exit code, every child process gone, the ports closed.
"""

from __future__ import annotations

import io
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import yaml

from smppgw.config import MqttConfig
from smppgw.demo import runner, stack
from smppgw.mqtt import MqttClient

from support.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[2]


def demo(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smppgw", "demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def gateway_pid(output: str) -> int:
    match = re.search(r"gateway +smppgw run --config \S+ \(pid (\d+)\)", output)
    assert match, output
    return int(match.group(1))


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_quick_demo_on_a_given_broker_passes_every_check(mosquitto: Mosquitto) -> None:
    result = demo("--quick", "--broker", f"{mosquitto.host}:{mosquitto.port}")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"broker     {mosquitto.host}:{mosquitto.port} (--broker)" in out
    summary = "summary: 48 jobs sent (6 showcase, 1 OTP, 1 promotion after an opt-out, 40 bulk"
    assert summary in out
    assert "RESULT: OK, every job reached its expected final status" in out
    # Events as they arrive, one line each.
    assert re.search(r"shipped-1984-\w+ +delivered +vinaphone 1 part", out), out
    assert re.search(r"policy-1984-\w+ +submitted +viettel +3 parts +ids \w+ \w+ \w+", out), out
    assert re.search(r"landline-\w+ +rejected +- +0 parts +no_route:", out), out
    assert "… burst" in out  # progress line
    # The OTP overtook reminders queued before it, measured at the SMSC.
    overtook = re.search(r"ok   OTP overtook: .*\(overtook (\d+)\)", out)
    assert overtook and int(overtook.group(1)) > 0, out
    assert re.search(r"ok   mobifone TPS: +\d+ submit_sm .* at most (\d+) in any 1 s", out)
    assert re.search(r"ok   receipts: .* 0 unmatched", out), out
    # The customer's MO reply came back on the inbound topic.
    assert "MO on demo/sms/inbound/viettel: from 84971234567 to 8079: '1'" in out
    assert "ok   MO reply:" in out
    # ... tied to the COD job that asked for it (expect_reply).
    assert re.search(r"from 84971234567 to 8079: '1' \(in reply to cod-2048-\w+\)", out), out
    assert re.search(
        r"ok   COD reply tied: +in_reply_to cod-2048-\w+, also on "
        r"demo/sms/reply/cod-2048-\w+",
        out,
    ), out
    # An opt-out honoured: the customer's HỦY is recorded, a later promotion is refused.
    assert "consent on demo/sms/consent: 84986543210 opt_out (keyword 'HUY' via viettel)" in out
    assert re.search(r"ok   opt-out honoured: .* rejected \(opted_out\)", out), out
    assert re.search(r"ok   promotion: +delivered", out), out
    # viettel: 5 as before, the promotion and the opt-out confirmation.
    assert "submit_sm per SMSC (GET /stats): viettel 7, vinaphone 1, mobifone 41" in out
    assert "stopped: gateway (SIGTERM, drained, exit 0), simulator (exit 0)" in out
    assert gone(gateway_pid(out))
    took = re.search(r"stopped: .* after ([\d.]+) s", out)
    assert took and float(took.group(1)) < 15, out


def test_starts_and_removes_its_own_mosquitto() -> None:
    result = demo("--quick", "--burst", "6", "--broker", "own")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    started = re.search(r"started mosquitto on 127\.0\.0\.1:(\d+) \(max_queued_messages 0", out)
    assert started, out
    assert "RESULT: OK" in out
    assert re.search(r"stopped: gateway .*, mosquitto after", out), out
    assert not listening(int(started.group(1)))


def test_a_job_that_misses_its_expected_status_fails_the_run(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = yaml.safe_load((ROOT / "conf" / "sim-demo.yaml").read_text())
    sims["smscs"]["mobifone"]["faults"] = {
        "reject_fraction": 1.0,
        "reject_status": "ESME_RINVDSTADR",
    }
    broken = tmp_path / "sim.yaml"
    broken.write_text(yaml.safe_dump(sims))
    result = demo(
        "--burst",
        "4",
        "--broker",
        f"{mosquitto.host}:{mosquitto.port}",
        "--sim-config",
        str(broken),
        "--timeout",
        "10",
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert re.search(r"FAIL OTP \(high\): +rejected \(ESME_RINVDSTADR\)", out), out
    assert "FAIL 4 reminders (low):" in out
    assert "ok   order confirmation:" in out  # the other carriers were fine
    assert "RESULT: FAILED" in out
    assert gone(gateway_pid(out))
    # A failed run keeps its logs for the user to read; the test cleans up after reading.
    kept = re.search(r"logs and configs kept in (\S+)", out)
    assert kept, out
    assert (Path(kept.group(1)) / "gateway.log").is_file()
    shutil.rmtree(kept.group(1))


class Running:
    """A demo process whose output is read line by line while it runs."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smppgw", "demo", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.lines)
                continue
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}:\n{''.join(self.lines)}")

    def finish(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return code


async def test_keep_running_serves_new_jobs_until_ctrl_c(mosquitto: Mosquitto) -> None:
    run = Running(
        "--quick",
        "--burst",
        "6",
        "--keep-running",
        "--broker",
        f"{mosquitto.host}:{mosquitto.port}",
    )
    try:
        pid = gateway_pid(run.wait_for(r"\(pid \d+\)"))
        metrics = run.wait_for(r"metrics http://127\.0\.0\.1:\d+/metrics")
        metrics_port = int(re.search(r"127\.0\.0\.1:(\d+)/metrics", metrics).group(1))  # type: ignore[union-attr]
        run.wait_for("RESULT: OK")
        run.wait_for("everything is still running")
        # Still up: a job published now, as the printed mosquitto_pub line would, is sent
        # and its events are printed by the demo.
        client = MqttClient(
            MqttConfig(host=mosquitto.host, port=mosquitto.port, client_id="demo-test-pub"),
        )
        async with client:
            job = {"id": "try-1", "to": "0981234567", "text": "Xin chào"}
            await client.publish("demo/sms/submit", orjson.dumps(job), qos=1, timeout=5)
        run.wait_for(r"try-1 +submitted +viettel", timeout=10)
        run.wait_for(r"try-1 +delivered +viettel", timeout=10)
        assert listening(metrics_port)
        run.proc.send_signal(signal.SIGINT)
        assert run.finish() == 0, "".join(run.lines)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
    out = "".join(run.lines)
    assert "stopped: gateway (SIGTERM, drained, exit 0), simulator (exit 0)" in out
    assert gone(pid)
    assert not listening(metrics_port)


async def test_simulators_get_new_ports_when_a_planned_one_was_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A port planned free can be taken before the simulator binds it (seen in CI): the
    demo plans new ports and starts the simulators again instead of failing the run."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real = stack.free_port
    handed = iter([taken])

    def free_port(host: str = "127.0.0.1") -> int:
        return next(handed, None) or real(host)

    monkeypatch.setattr(stack, "free_port", free_port)
    out = io.StringIO()
    demo_run = runner.Demo(runner.Options(), out)
    try:
        await demo_run._start_sims()
        assert demo_run.sims is not None
        assert taken not in demo_run.sims.ports.values()
        assert "new ports (1)" in out.getvalue()
    finally:
        if demo_run.sim is not None:
            await demo_run.sim.astop()
        squatter.close()
        shutil.rmtree(demo_run.workdir, ignore_errors=True)
