"""Secrets never leave the process: passwords are not in the gateway's logs (JSON, debug
level, including a refused bind, a reload and a shutdown), not in a /metrics, /healthz or
/readyz scrape, and not in ``smppgw check-config`` output, valid config or broken.

(Unprivileged systemd unit and container image: tests/test_packaging.py. TLS verification
to the broker: tests/mqtt/test_mqtt.py.)
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from reliability.stack import (
    CARRIER_PASSWORD,
    MQTT_PASSWORD,
    GatewayProc,
    Observer,
    SimProc,
    carrier_entry,
    job,
)
from support.broker import Mosquitto

WRONG_PASSWORD = "Wrong-Pw-5eb1d9"
ENV_PASSWORD = "Env-Pw-9a8b7c"
SECRETS = (CARRIER_PASSWORD, MQTT_PASSWORD, WRONG_PASSWORD, ENV_PASSWORD)


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode("utf-8", "replace")
    finally:
        conn.close()


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


async def test_passwords_never_in_logs_metrics_or_check_config(
    tmp_path: Path, mosquitto: Mosquitto, report
) -> None:
    sim = SimProc(tmp_path / "sim", receipt_delay=0.2).start()
    secret_file = tmp_path / "mqtt.pw"
    secret_file.write_text(MQTT_PASSWORD + "\n")
    os.environ["SMPPGW_TEST_ENV_PW"] = ENV_PASSWORD
    carriers = [
        carrier_entry(sim),
        # Refused at every bind: its password shows up in bind attempts, failures, retries.
        carrier_entry(sim, name="wrongpw", password=WRONG_PASSWORD, prefixes=["8490"]),
        {
            **carrier_entry(sim, name="fromenv", prefixes=["8491"]),
            "password": None,
            "password_env": "SMPPGW_TEST_ENV_PW",
        },
    ]
    carriers[2].pop("password")
    gw = GatewayProc(
        tmp_path / "gw",
        mosquitto,
        carriers,
        log_level="debug",
        mqtt={"username": "gateway", "password_file": str(secret_file)},
    )
    try:
        async with Observer(mosquitto) as obs:
            await gw.start()
            ids = [f"sec-{i:06d}" for i in range(20)]
            await obs.publish_many(job("sec", i) for i in range(20))
            await obs.publish({"id": "sec-wrong", "to": "0901234567", "text": "to wrongpw"})
            await obs.publish_raw(b'{"password": "' + CARRIER_PASSWORD.encode() + b'"}')
            await obs.wait_final(ids, timeout=30)
            await asyncio.sleep(1.5)  # a few bind refusals and metric refreshes
            assert gw.metrics_port is not None
            scrapes = {
                path: _get(gw.metrics_port, path) for path in ("/metrics", "/healthz", "/readyz")
            }
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGHUP)  # reload: logs the carriers again
            await asyncio.sleep(1.0)
            assert await gw.terminate() == 0
    finally:
        gw.close()
        sim.stop()
        os.environ.pop("SMPPGW_TEST_ENV_PW", None)
    log = gw.log_text()
    check_ok = _check_config(gw.config_path)
    broken = tmp_path / "broken.yaml"
    config = yaml.safe_load(gw.config_path.read_text())
    config["carriers"][0]["tsp"] = 5  # unknown key next to a password
    config["carriers"][1]["password"] = ["not", "a", WRONG_PASSWORD]
    broken.write_text(yaml.safe_dump(config))
    check_broken = _check_config(broken)
    report(
        scenario="secrets in logs, metrics, check-config",
        log_lines=log.count("\n"),
        bind_refusals_logged=log.count("bind failed"),
        scraped_bytes=sum(len(t) for t in scrapes.values()),
        check_config_exit_codes=[check_ok[0], check_broken[0]],
        leaks={
            "log": _leaks(log),
            **{path: _leaks(text) for path, text in scrapes.items()},
            "check-config": _leaks(check_ok[1]),
            "check-config (broken)": _leaks(check_broken[1]),
        },
    )
    assert "bind failed" in log, "the log should have seen a refused bind"
    assert check_ok[0] == 0 and check_broken[0] == 2
    assert "***" in check_ok[1]
    assert not _leaks(log)
    for path, text in scrapes.items():
        assert not _leaks(text), path
    assert not _leaks(check_ok[1])
    assert not _leaks(check_broken[1])


def _check_config(path: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "smppgw", "check-config", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "SMPPGW_TEST_ENV_PW": ENV_PASSWORD},
        timeout=30,
    )
    return done.returncode, done.stdout + done.stderr
