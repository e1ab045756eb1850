"""Consent end to end, in-process: a real mosquitto, a real simulator (MO injected as the
SMSC's deliver_sm), a real SQLite store. Marketing hours are chosen relative to the clock
(open: ``00:00-24:00``; closed: a one-minute window 12 hours away, in UTC), so every test
passes at any time of day."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from smppgw.config.loader import load_config
from smppgw.gateway import Gateway
from smppgw.mqtt.schema import format_at
from smppgw.sim.server import Simulator

from gateway.harness import Observer, gateway_config, running, sim_config
from support.broker import Mosquitto

CUSTOMER = "84981234567"
OTHER = "84981111111"
ALWAYS = "00:00-24:00"


def closed_hours() -> str:
    """A one-minute window 12 hours from now (UTC): closed now, whatever the time."""
    hour = (time.gmtime().tm_hour + 12) % 24
    return f"{hour:02d}:00-{hour:02d}:01"


@pytest.fixture
async def viettel() -> AsyncIterator[Simulator]:
    async with Simulator(sim_config(receipt_delay=0.05, name="viettel")) as sim:
        yield sim


async def consent_observer(mosquitto: Mosquitto) -> Observer:
    obs = Observer(mosquitto)
    await obs.__aenter__()
    await obs.client.subscribe("sms/consent")
    return obs


def consent_events(obs: Observer) -> list[dict[str, Any]]:
    return obs.by_topic.get("sms/consent", [])


def error_code(obs: Observer, job_id: str) -> str | None:
    (final,) = obs.final(job_id)
    return final["error"]["code"] if final["error"] else final["status"]


def submits_to(sim: Simulator, number: str) -> list[Any]:
    return [s for s in sim.submits if s.pdu.destination_addr == number]


def sample(gateway: Gateway, name: str, **labels: str) -> float:
    return gateway.metrics.registry.get_sample_value(name, labels) or 0.0


def first_value(conn: sqlite3.Connection, query: str) -> object:
    """For ``Store.run``: module-level, so it pickles to the writer process."""
    return conn.execute(query).fetchone()[0]


async def test_opt_out_by_mo_is_honoured_and_survives_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    consent = {
        "marketing_hours": ALWAYS,
        "optout_reply": "Ban da huy nhan tin quang cao.",
        "help_reply": "Shop: goi 1900 1234",
    }
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel}, consent=consent)
    obs = await consent_observer(mosquitto)
    try:
        async with running(config) as gateway:
            assert await viettel.send_mo(None, CUSTOMER, "8079", " Hủy. ") == 1
            await obs.wait_for(lambda: bool(consent_events(obs)))
            (event,) = consent_events(obs)
            assert event["number"] == CUSTOMER and event["action"] == "opt_out"
            assert (event["keyword"], event["carrier"], event["source"]) == ("HUY", "viettel", "mo")
            assert event["at"].endswith("Z")
            # The MO itself is still published, and was acknowledged to the SMSC.
            await obs.wait_for(lambda: bool(obs.by_topic.get("sms/inbound/viettel")))
            assert obs.by_topic["sms/inbound/viettel"][0]["text"] == " Hủy. "
            await obs.wait_for(lambda: viettel.stats()["mo_acknowledged"] == 1)
            # The opt-out confirmation goes back from the number the customer wrote to.
            await obs.wait_for(lambda: bool(submits_to(viettel, CUSTOMER)))
            (reply,) = submits_to(viettel, CUSTOMER)
            assert reply.pdu.source_addr == "8079"
            assert reply.pdu.short_message == b"Ban da huy nhan tin quang cao."
            # The same keyword again changes nothing: no event, no second confirmation.
            await viettel.send_mo(None, CUSTOMER, "8079", "HUY")
            await obs.wait_for(lambda: viettel.stats()["mo_acknowledged"] == 2)
            await obs.wait_for(lambda: len(obs.by_topic["sms/inbound/viettel"]) == 2)

            await obs.submit(id="promo-1", to="0981234567", text="Sale 50%", category="marketing")
            await obs.submit(id="otp-1", to="0981234567", text="OTP 123456")
            await obs.submit(id="promo-2", to="0981111111", text="Sale 50%", category="marketing")
            await obs.wait_final(["promo-1", "otp-1", "promo-2"])
            assert error_code(obs, "promo-1") == "opted_out"
            assert obs.final("promo-1")[0]["status"] == "rejected"
            assert error_code(obs, "otp-1") == "delivered"
            assert error_code(obs, "promo-2") == "delivered"
            (sent,) = submits_to(viettel, OTHER)
            # GSM 03.38, unpacked: '[' and ']' are escape pairs (ESC '<', ESC '>').
            assert sent.pdu.short_message == b"\x1b<QC\x1b> Sale 50%"
            assert sample(gateway, "smppgw_jobs_rejected_total", reason="opted_out") == 1
            opt_outs = "smppgw_consent_changes_total"
            assert sample(gateway, opt_outs, action="opt_out", source="mo") == 1
            assert len(consent_events(obs)) == 1
            assert len(submits_to(viettel, CUSTOMER)) == 2  # the confirmation and the OTP

        # A restart keeps the opt-out.
        async with running(config):
            await obs.submit(id="promo-3", to="0981234567", text="Sale", category="marketing")
            await obs.wait_final(["promo-3"])
            assert error_code(obs, "promo-3") == "opted_out"
            # Opting back in (Vietnamese "DK") lets marketing through again.
            await viettel.send_mo(None, CUSTOMER, "8079", "Đk")
            await obs.wait_for(lambda: len(consent_events(obs)) == 2)
            assert consent_events(obs)[1]["action"] == "opt_in"
            assert consent_events(obs)[1]["keyword"] == "DK"
            await obs.submit(id="promo-4", to="0981234567", text="Sale", category="marketing")
            await obs.wait_final(["promo-4"])
            assert error_code(obs, "promo-4") == "delivered"
    finally:
        await obs.__aexit__()


async def test_an_opt_out_is_acknowledged_to_the_smsc_only_once_it_is_durable(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    """Another process holds the store locked: the HUY is neither answered nor recorded
    until the lock goes, then both happen (nothing lost, nothing answered early)."""
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel})
    obs = await consent_observer(mosquitto)
    try:
        async with running(config):
            other = sqlite3.connect(config.store.path, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            try:
                await viettel.send_mo(None, CUSTOMER, "8079", "STOP")
                await obs.wait_for(lambda: viettel.stats()["mo_sent"] == 1)
                await asyncio.sleep(1.0)
                assert viettel.stats()["mo_acknowledged"] == 0
            finally:
                other.execute("ROLLBACK")
                other.close()
            await obs.wait_for(lambda: bool(consent_events(obs)))
            await obs.wait_for(lambda: viettel.stats()["mo_acknowledged"] == 1)
            assert consent_events(obs)[0]["keyword"] == "STOP"
    finally:
        await obs.__aexit__()


async def test_help_gets_the_configured_reply_as_a_gateway_job(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    consent = {"help_reply": "Shop: goi 1900 1234", "help_keywords": ["HELP", "TRO GIUP"]}
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel}, consent=consent)
    obs = await consent_observer(mosquitto)
    try:
        async with running(config):
            await viettel.send_mo(None, CUSTOMER, "8079", "Trợ giúp")
            await obs.wait_for(lambda: bool(submits_to(viettel, CUSTOMER)))
            (reply,) = submits_to(viettel, CUSTOMER)
            assert (reply.pdu.source_addr, reply.pdu.source_addr_ton) == ("8079", 0)
            assert reply.pdu.short_message == b"Shop: goi 1900 1234"
            await obs.wait_for(
                lambda: any(t.startswith("sms/status/smppgw:help:") for t in obs.by_topic)
            )
            topic = next(t for t in obs.by_topic if t.startswith("sms/status/smppgw:help:"))
            assert topic.startswith(f"sms/status/smppgw:help:{CUSTOMER}:")
            assert consent_events(obs) == []  # help changes no consent
    finally:
        await obs.__aexit__()


async def test_mo_is_optin_records_a_first_mo_once_and_never_over_an_opt_out(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    config = gateway_config(
        tmp_path, mosquitto, {"viettel": viettel}, consent={"mo_is_optin": True}
    )
    obs = await consent_observer(mosquitto)
    try:
        async with running(config):
            for text in ("Cho toi hoi don 1984", "1"):
                await viettel.send_mo(None, CUSTOMER, "8079", text)
            await viettel.send_mo(None, OTHER, "8079", "STOP")
            await viettel.send_mo(None, OTHER, "8079", "ok")
            await obs.wait_for(lambda: len(obs.by_topic.get("sms/inbound/viettel", [])) == 4)
            await obs.wait_for(lambda: len(consent_events(obs)) >= 2)
            await asyncio.sleep(0.3)
    finally:
        await obs.__aexit__()
    events = [(e["number"], e["action"], e["keyword"]) for e in consent_events(obs)]
    assert events == [(CUSTOMER, "opt_in", "mo"), (OTHER, "opt_out", "STOP")]


async def test_daily_cap_rejects_and_counts_across_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    consent = {"marketing_hours": ALWAYS, "marketing_daily_cap": 2}
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel}, consent=consent)
    async with Observer(mosquitto) as obs:
        async with running(config) as gateway:
            for n in range(3):
                await obs.submit(id=f"cap-{n}", to=CUSTOMER, text="Sale", category="marketing")
                await obs.wait_final([f"cap-{n}"])
            await obs.submit(id="cap-otp", to=CUSTOMER, text="OTP 1")
            await obs.wait_final(["cap-otp"])
            assert [error_code(obs, f"cap-{n}") for n in range(3)] == [
                "delivered",
                "delivered",
                "frequency_cap",
            ]
            assert "marketing_daily_cap 2" in obs.final("cap-2")[0]["error"]["reason"]
            assert error_code(obs, "cap-otp") == "delivered"
            assert sample(gateway, "smppgw_marketing_caps_total", action="reject") == 1
        async with running(config):
            await obs.submit(id="cap-3", to=CUSTOMER, text="Sale", category="marketing")
            await obs.wait_final(["cap-3"])
            assert error_code(obs, "cap-3") == "frequency_cap"


async def test_outside_marketing_hours_the_job_is_scheduled_and_checked_again_at_release(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    """Held (``scheduled``, ``send_at`` = the opening) by the held-jobs timer, then decided
    again when due: released and sent, or refused if the number opted out meanwhile."""
    consent = {"timezone": "UTC", "marketing_hours": closed_hours()}
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel}, consent=consent)
    async with Observer(mosquitto) as obs:
        async with running(config) as gateway:
            await obs.submit(id="night-1", to=CUSTOMER, text="Sale", category="marketing")
            await obs.submit(id="night-2", to=OTHER, text="Sale", category="marketing")
            await obs.submit(id="night-otp", to=CUSTOMER, text="OTP 2")
            await obs.wait_final(["night-otp"])
            await obs.wait_for(lambda: bool(obs.statuses("night-1") and obs.statuses("night-2")))
            (scheduled,) = obs.statuses("night-1")
            assert scheduled["status"] == "scheduled"
            opening = await gateway.store.job("night-1")
            assert opening is not None and opening.state == "held"
            assert opening.hold_reason == "window" and opening.send_at is not None
            assert opening.send_at - time.time() > 3600
            assert scheduled["send_at"] == format_at(opening.send_at)  # HH:00:00 in UTC
            assert scheduled["send_at"][13:] == ":00:00.000Z"
            assert [s.pdu.short_message for s in submits_to(viettel, CUSTOMER)] == [b"OTP 2"]
            held = "smppgw_jobs_held"
            await obs.wait_for(lambda: sample(gateway, held, reason="window") == 2)
            # OTHER texts STOP while its promotion waits.
            await viettel.send_mo(None, OTHER, "8079", "STOP")
            await obs.wait_for(lambda: viettel.stats()["mo_acknowledged"] == 1)
            # The opening comes (the timer is asked as if it were then).
            await gateway.holds.release_due(opening.send_at)
            await obs.wait_final(["night-1", "night-2"])
            assert error_code(obs, "night-1") == "delivered"
            assert error_code(obs, "night-2") == "opted_out"
            assert b"\x1b<QC\x1b> Sale" in [
                s.pdu.short_message for s in submits_to(viettel, CUSTOMER)
            ]


async def test_a_marketing_job_with_send_at_is_decided_at_its_send_at(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    """Held for its own ``send_at``: counted in the cap at that time, and refused then if
    the number opted out in between (the rules apply when it would be sent)."""
    config = gateway_config(
        tmp_path, mosquitto, {"viettel": viettel}, consent={"marketing_hours": ALWAYS}
    )
    async with Observer(mosquitto) as obs:
        async with running(config) as gateway:
            send_at = int(time.time()) + 3600
            for job_id, to in (("later-1", CUSTOMER), ("later-2", OTHER)):
                await obs.submit(
                    id=job_id, to=to, text="Sale", category="marketing", send_at=send_at
                )
            await obs.wait_for(lambda: bool(obs.statuses("later-1") and obs.statuses("later-2")))
            view = await gateway.store.job("later-1")
            assert view is not None and (view.state, view.hold_reason) == ("held", "send_at")
            at = "SELECT at FROM marketing_sends WHERE job_id = 'later-1'"
            assert await gateway.store.run(partial(first_value, query=at)) == send_at
            await viettel.send_mo(None, CUSTOMER, "8079", "Từ chối")
            await obs.wait_for(lambda: viettel.stats()["mo_acknowledged"] == 1)
            await gateway.holds.release_due(send_at)
            await obs.wait_final(["later-1", "later-2"])
            assert error_code(obs, "later-1") == "opted_out"
            assert error_code(obs, "later-2") == "delivered"


async def test_cap_defer_schedules_the_job_after_the_oldest_send_leaves_the_window(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    consent = {"marketing_hours": ALWAYS, "marketing_daily_cap": 1, "cap_action": "defer"}
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel}, consent=consent)
    async with Observer(mosquitto) as obs:
        async with running(config) as gateway:
            await obs.submit(id="d-1", to=CUSTOMER, text="Sale", category="marketing")
            await obs.wait_final(["d-1"])
            before = time.time()
            await obs.submit(id="d-2", to=CUSTOMER, text="Sale", category="marketing")
            await obs.wait_for(lambda: bool(obs.statuses("d-2")))
            assert obs.statuses("d-2")[0]["status"] == "scheduled"
            view = await gateway.store.job("d-2")
            assert view is not None and view.hold_reason == "cap"
            assert view.send_at is not None
            assert 86400 - 60 < view.send_at - before <= 86400
            assert sample(gateway, "smppgw_marketing_caps_total", action="defer") == 1
            held = "smppgw_jobs_held"
            await obs.wait_for(lambda: sample(gateway, held, reason="cap") == 1)


async def test_sighup_reload_changes_keywords_and_hours(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    path = tmp_path / "gw.yaml"
    doc = _doc(tmp_path, mosquitto, viettel)
    closed = {"timezone": "UTC", "marketing_hours": closed_hours(), "optout_keywords": ["STOP"]}
    doc["consent"] = closed
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    gateway = Gateway(load_config(path), config_path=str(path))
    task = asyncio.create_task(gateway.run())
    obs = await consent_observer(mosquitto)
    try:
        await asyncio.wait_for(gateway.started.wait(), 15)
        assert await gateway.carriers["viettel"].wait_ready(5)
        await viettel.send_mo(None, CUSTOMER, "8079", "Hủy")
        await obs.wait_for(lambda: bool(obs.by_topic.get("sms/inbound/viettel")))
        await obs.submit(id="before", to=OTHER, text="Sale", category="marketing")
        await obs.wait_for(lambda: sample(gateway, "smppgw_jobs_held", reason="window") == 1)
        assert consent_events(obs) == []  # HUY is not a keyword in this config

        doc["consent"] = {"marketing_hours": ALWAYS, "optout_keywords": ["STOP", "HUY"]}
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        reloads = "smppgw_config_reloads_total"
        os.kill(os.getpid(), signal.SIGHUP)
        await obs.wait_for(lambda: sample(gateway, reloads, result="ok") == 1)

        await viettel.send_mo(None, CUSTOMER, "8079", "Hủy")
        await obs.wait_for(lambda: bool(consent_events(obs)))
        assert consent_events(obs)[0]["keyword"] == "HUY"
        await obs.submit(id="after", to=OTHER, text="Sale", category="marketing")
        await obs.wait_final(["after"])
        assert error_code(obs, "after") == "delivered"
        # The job held under the old hours is decided under the new rules when it comes due.
        view = await gateway.store.job("before")
        assert view is not None and view.held_until is not None
        await gateway.holds.release_due(view.held_until)
        await obs.wait_final(["before"])
        assert error_code(obs, "before") == "delivered"
    finally:
        await obs.__aexit__()
        gateway.stop()
        await asyncio.wait_for(task, 30)


async def test_consent_command_beside_a_running_gateway(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    path = tmp_path / "gw.yaml"
    doc = _doc(tmp_path, mosquitto, viettel)
    doc["consent"] = {"marketing_hours": ALWAYS}
    path.write_text(yaml.safe_dump(doc))
    lines = ["phone,name"] + [f"09{n:08d},customer {n}" for n in range(10_000)]
    lines += ["0981234567", "not a number", "12345"]
    csv_file = tmp_path / "dnc.csv"
    csv_file.write_text("\n".join(lines) + "\n")
    obs = await consent_observer(mosquitto)
    try:
        async with running(load_config(path)) as gateway:
            added = _consent_cli(path, "add", "0981234567")
            assert added.stdout == f"{CUSTOMER}: opted out\n"
            await obs.submit(id="dnc-1", to="0981234567", text="Sale", category="marketing")
            await obs.wait_final(["dnc-1"])
            assert error_code(obs, "dnc-1") == "opted_out"
            await obs.wait_for(lambda: bool(consent_events(obs)))
            (event,) = consent_events(obs)
            assert (event["number"], event["action"], event["source"]) == (
                CUSTOMER,
                "opt_out",
                "admin",
            )
            assert (event["keyword"], event["carrier"]) == (None, None)
            changes = "smppgw_consent_changes_total"
            await obs.wait_for(
                lambda: sample(gateway, changes, action="opt_out", source="admin") == 1
            )

            started = time.perf_counter()
            imported = _consent_cli(path, "import", str(csv_file))
            took = time.perf_counter() - started
            print(f"\nimport of 10,003 lines: {took:.2f} s (command), {imported.stdout.strip()}")
            first = imported.stdout.splitlines()[0]
            assert first.startswith("added 10000, already opted out 1, invalid lines: 2")
            assert "line 10003: destination 'not a number'" in imported.stdout
            assert "line 10004: destination '12345' is too short" in imported.stdout

            assert _consent_cli(path, "remove", "+84981234567").stdout.endswith("list\n")
            await obs.submit(id="dnc-2", to="0981234567", text="Sale", category="marketing")
            await obs.submit(id="dnc-3", to="0900000007", text="Sale", category="marketing")
            await obs.wait_final(["dnc-2", "dnc-3"])
            assert error_code(obs, "dnc-3") == "opted_out"  # imported
            assert error_code(obs, "dnc-2") == "delivered"  # taken off the list
            exported = _consent_cli(path, "export").stdout.splitlines()
            assert exported[0] == "number,status,keyword,source,carrier,changed_at"
            assert len(exported) == 1 + 10_000
            await obs.wait_for(
                lambda: sample(gateway, changes, action="opt_out", source="admin") == 10_001,
                timeout=15,
            )
            assert sample(gateway, changes, action="opt_in", source="admin") == 1
            # Their events went through the gateway's outbox, and it knows it is empty
            # (what its drain at SIGTERM waits for).
            await obs.wait_for(lambda: len(consent_events(obs)) == 10_002, timeout=15)
            assert await gateway.outbox.flush(2.0)
    finally:
        await obs.__aexit__()


def _consent_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smppgw", "consent", "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def _doc(tmp_path: Path, mosquitto: Mosquitto, sim: Simulator) -> dict[str, Any]:
    return {
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "gw-consent"},
        "store": {"path": str(tmp_path / "gw.db")},
        "metrics": {"listen": None},
        "log": {"level": "warning", "format": "console"},
        "ctl": {"socket": None},
        "carriers": [
            {
                "name": "viettel",
                "host": "127.0.0.1",
                "port": sim.port,
                "system_id": "shop",
                "password": "secret",
                "tps": 200,
                "source": "SHOPVN",
                "prefixes": ["8498", "8490"],
                "reconnect_min": 0.05,
            }
        ],
    }
