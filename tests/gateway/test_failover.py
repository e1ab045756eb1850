"""Failover against real simulators: carrier A (viettel) and carrier B (vinaphone) are two
simulated SMSCs on their own ports; jobs go in over a real mosquitto.

What each test shows is in its name; README "Failover and ported numbers" has the rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from smppgw.config import Config
from smppgw.config.loader import load_config, parse_config
from smppgw.gateway import Gateway
from smppgw.sim.server import Simulator
from smppgw.smpp.constants import Status

from gateway.harness import Observer, sim_config
from support.broker import Mosquitto, free_port
from support.rates import most_in_second_ending_at

PORTED = "84981110000"  # a Viettel prefix, refused by the Viettel simulator
ON_NET = "84982220000"
B_NUMBER = "84912220000"
REFUSED = {"carrier": "viettel", "error": "ESME_RINVDSTADR"}


@pytest.fixture
async def sim_a() -> AsyncIterator[Simulator]:
    config = sim_config(
        name="viettel", receipt_delay=0.05, reject_dest={"8498111": Status.ESME_RINVDSTADR}
    )
    async with Simulator(config) as sim:
        yield sim


@pytest.fixture
async def sim_b() -> AsyncIterator[Simulator]:
    async with Simulator(sim_config(name="vinaphone", receipt_delay=0.05)) as sim:
        yield sim


def two_carriers(
    tmp_path: Path, broker: Mosquitto, a: Simulator, b: Simulator, **kw: Any
) -> Config:
    return parse_config(raw_config(tmp_path, broker, a, b, **kw))


def raw_config(
    tmp_path: Path,
    broker: Mosquitto,
    a: Simulator,
    b: Simulator,
    *,
    a_port: int | None = None,
    a_extra: dict[str, Any] | None = None,
    b_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """viettel (A) fails over to vinaphone (B) on ESME_RINVDSTADR; ``a_port`` points A
    elsewhere (a port nobody listens on: A never binds)."""
    raw_a = {
        "name": "viettel",
        "host": "127.0.0.1",
        "port": a_port or a.port,
        "system_id": "shop",
        "password": "secret",
        "tps": 200,
        "window": 20,
        "source": {"address": "SHOPVN"},
        "prefixes": ["8498", "8486", "8496"],
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
        "failover": ["vinaphone"],
        "failover_on": ["ESME_RINVDSTADR"],
        **(a_extra or {}),
    }
    raw_b = {
        "name": "vinaphone",
        "host": "127.0.0.1",
        "port": b.port,
        "system_id": "shop",
        "password": "secret",
        "tps": 200,
        "window": 20,
        "source": {"address": "SHOPVN"},
        "prefixes": ["8491", "8494", "8488"],
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
        **(b_extra or {}),
    }
    return {
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-failover"},
        "store": {"path": str(tmp_path / "gw.db")},
        "metrics": {"listen": None},
        "log": {"level": "warning", "format": "console"},
        "ctl": {"socket": None},
        "carriers": [raw_a, raw_b],
    }


@contextlib.asynccontextmanager
async def gateway(
    config: Config, *, ready: tuple[str, ...] = ("viettel", "vinaphone"), path: Path | None = None
) -> AsyncIterator[Gateway]:
    """The gateway, once the carriers in ``ready`` have their binds up."""
    gw = Gateway(config, config_path=None if path is None else str(path))
    task = asyncio.create_task(gw.run(install_signals=False))
    await asyncio.wait_for(gw.started.wait(), 15)
    for name in ready:
        assert await gw.carriers[name].wait_ready(5), f"{name} did not bind"
    try:
        yield gw
    finally:
        gw.stop()
        await asyncio.wait_for(task, 30)


def to(sim: Simulator, number: str) -> list[Any]:
    return [s for s in sim.submits if s.pdu.destination_addr == number]


def failovers(gw: Gateway, reason: str) -> float:
    value = gw.metrics.registry.get_sample_value(
        "smppgw_failovers_total", {"from": "viettel", "to": "vinaphone", "reason": reason}
    )
    return value or 0.0


async def test_ported_number_refused_by_a_is_delivered_by_b_and_the_next_job_goes_to_b_first(
    tmp_path: Path, mosquitto: Mosquitto, sim_a: Simulator, sim_b: Simulator
) -> None:
    async with gateway(two_carriers(tmp_path, mosquitto, sim_a, sim_b)) as gw:
        async with Observer(mosquitto) as obs:
            await obs.submit(id="port-1", to="0981110000", text="OTP 1111")
            await obs.submit(id="home-1", to="0982220000", text="OTP 2222")
            await obs.wait_final(["port-1", "home-1"])
            refused_at_a = sim_a.stats()["submits_rejected"]
            await obs.submit(id="port-2", to="0981110000", text="OTP 3333")
            await obs.wait_final(["port-2"])
            assert failovers(gw, "refused") == 1
            await gw.failover.refresh_count()
            assert gw.metrics.registry.get_sample_value("smppgw_ported_numbers") == 1

    first = obs.statuses("port-1")
    assert [e["status"] for e in first] == ["submitted", "delivered"]
    # Both events name the carrier that took it, and the one that refused it.
    assert all(e["carrier"] == "vinaphone" for e in first)
    assert all(e["attempts"] == [REFUSED] for e in first)
    # The receipt matched on vinaphone: the message id is B's.
    assert first[0]["message_ids"] == [to(sim_b, PORTED)[0].message_id]
    # The second job to the learned number went to B first: A saw no second refusal.
    assert sim_a.stats()["submits_rejected"] == refused_at_a == 1
    second = obs.statuses("port-2")
    assert [(e["status"], e["carrier"], e["attempts"]) for e in second] == [
        ("submitted", "vinaphone", []),
        ("delivered", "vinaphone", []),
    ]
    assert len(to(sim_b, PORTED)) == 2 and not to(sim_a, PORTED)
    home = obs.statuses("home-1")
    assert [(e["carrier"], e["attempts"]) for e in home] == [("viettel", []), ("viettel", [])]
    with sqlite3.connect(gw.config.store.path) as conn:
        row = conn.execute("SELECT carrier, source FROM ported WHERE number = ?", (PORTED,))
        assert row.fetchone() == ("vinaphone", "learned")


async def test_a_down_its_jobs_are_delivered_by_b_within_failover_after_plus_one_token(
    tmp_path: Path, mosquitto: Mosquitto, sim_a: Simulator, sim_b: Simulator
) -> None:
    after, after_high, tps_b = 1.0, 0.3, 10
    config = two_carriers(
        tmp_path,
        mosquitto,
        sim_a,
        sim_b,
        a_port=free_port(),  # nobody listens: A never binds
        a_extra={"failover_after": f"{after}s", "failover_after_high": f"{after_high}s"},
        b_extra={"tps": tps_b},
    )
    async with gateway(config, ready=("vinaphone",)) as gw:
        async with Observer(mosquitto) as obs:
            await asyncio.sleep(0.2)  # A has been down since the start
            sent = time.monotonic()
            await obs.submit(id="otp", to="0981234567", text="OTP 1", priority="high")
            await obs.submit(id="order", to="0981234568", text="order shipped")
            await obs.wait_for(lambda: bool(to(sim_b, "84981234567")), timeout=5)
            high_at = to(sim_b, "84981234567")[0].at
            await obs.wait_final(["otp", "order"], timeout=10)
            normal_at = to(sim_b, "84981234568")[0].at
            assert gw.health.readiness().details["failing_over"] == ["viettel"]
            assert failovers(gw, "down") == 2
    token = 1 / tps_b
    slack = 0.25  # the monitor's tick, MQTT and the store's commit on a busy 2-core box
    # A was down before the jobs came: the clock starts at the earliest of the two.
    assert high_at - sent <= after_high + token + slack
    assert normal_at - sent <= after + token + slack
    for job_id in ("otp", "order"):
        events = obs.statuses(job_id)
        assert [e["carrier"] for e in events] == ["vinaphone", "vinaphone"]
        assert all(e["attempts"] == [{"carrier": "viettel", "error": "down"}] for e in events)


async def test_moved_jobs_keep_priority_order_and_b_s_tps(
    tmp_path: Path, mosquitto: Mosquitto, sim_a: Simulator, sim_b: Simulator
) -> None:
    tps_b = 10
    config = two_carriers(
        tmp_path,
        mosquitto,
        sim_a,
        sim_b,
        a_port=free_port(),
        # Both lanes move at once, so the order at B is the lanes' order, not the timers'.
        a_extra={"failover_after": "1s", "failover_after_high": "1s"},
        b_extra={"tps": tps_b},
    )
    numbers = {}
    async with gateway(config, ready=("vinaphone",)):
        async with Observer(mosquitto) as obs:
            # Queued on A in the worst order: bulk first, the OTPs last.
            for digit, lane in enumerate(("low", "normal", "high")):
                for i in range(8):
                    job_id, number = f"{lane}-{i}", f"84981{digit}{i:05d}"
                    numbers[number] = job_id
                    await obs.submit(id=job_id, to=number, text="hi", priority=lane, dlr=False)
            await obs.wait_for(lambda: len(obs.messages) >= 24, timeout=15)
    arrivals = sorted(sim_b.submits, key=lambda s: s.at)
    order = [numbers[s.pdu.destination_addr] for s in arrivals]
    assert order == [f"{lane}-{i}" for lane in ("high", "normal", "low") for i in range(8)]
    times = [s.at for s in arrivals]
    worst = max(most_in_second_ending_at(times, t) for t in times)
    assert worst <= tps_b


async def test_outcome_unknown_on_a_is_reported_not_resent(
    tmp_path: Path, mosquitto: Mosquitto, sim_a: Simulator, sim_b: Simulator
) -> None:
    sim_a.set_faults(no_response_fraction=1.0)
    config = two_carriers(tmp_path, mosquitto, sim_a, sim_b, a_extra={"response_timeout": "0.5s"})
    async with gateway(config):
        async with Observer(mosquitto) as obs:
            await obs.submit(id="lost", to="0982220000", text="pay 100k")
            await obs.wait_final(["lost"], timeout=10)
            await asyncio.sleep(0.3)  # a resend would have reached B by now
    (final,) = obs.final("lost")
    assert (final["status"], final["carrier"]) == ("failed", "viettel")
    assert final["error"]["code"] == "unknown_outcome" and final["attempts"] == []
    assert len(to(sim_a, ON_NET)) == 1 and not to(sim_b, ON_NET)


async def test_with_resend_on_timeout_exhausted_retries_move_the_job(
    tmp_path: Path, mosquitto: Mosquitto, sim_a: Simulator, sim_b: Simulator
) -> None:
    sim_a.set_faults(no_response_fraction=1.0)
    config = two_carriers(
        tmp_path,
        mosquitto,
        sim_a,
        sim_b,
        a_extra={
            "response_timeout": "0.3s",
            "resend_on_timeout": True,
            "max_retries": 1,
            "retry_backoff": "0.05s",
        },
    )
    async with gateway(config) as gw:
        async with Observer(mosquitto) as obs:
            await obs.submit(id="again", to="0982220000", text="pay 100k")
            await obs.wait_final(["again"], timeout=10)
            assert failovers(gw, "retries") == 1
    events = obs.statuses("again")
    assert [(e["status"], e["carrier"]) for e in events] == [
        ("submitted", "vinaphone"),
        ("delivered", "vinaphone"),
    ]
    assert events[0]["attempts"] == [{"carrier": "viettel", "error": "retries_exhausted"}]


async def test_a_forced_carrier_moves_only_with_failover_true(
    tmp_path: Path, mosquitto: Mosquitto, sim_a: Simulator, sim_b: Simulator
) -> None:
    async with gateway(two_carriers(tmp_path, mosquitto, sim_a, sim_b)):
        async with Observer(mosquitto) as obs:
            await obs.submit(id="forced", to="0981110000", text="x", carrier="viettel")
            await obs.submit(
                id="forced-ok", to="0981110001", text="x", carrier="viettel", failover=True
            )
            await obs.submit(id="never", to="0981110002", text="x", failover=False)
            await obs.wait_final(["forced", "forced-ok", "never"])
    for job_id in ("forced", "never"):
        (final,) = obs.final(job_id)
        assert (final["status"], final["carrier"]) == ("rejected", "viettel")
        assert final["error"]["code"] == "ESME_RINVDSTADR" and final["attempts"] == []
    assert [e["carrier"] for e in obs.statuses("forced-ok")] == ["vinaphone", "vinaphone"]
    assert obs.statuses("forced-ok")[0]["attempts"] == [REFUSED]


async def test_a_paused_carrier_s_jobs_fail_over_and_readyz_says_paused(
    tmp_path: Path, mosquitto: Mosquitto, sim_a: Simulator, sim_b: Simulator
) -> None:
    async with gateway(two_carriers(tmp_path, mosquitto, sim_a, sim_b)) as gw:
        gw.set_paused("viettel", True)
        async with Observer(mosquitto) as obs:
            await obs.submit(id="p", to="0982220000", text="x", priority="low")
            await obs.wait_final(["p"], timeout=5)
            details = gw.health.readiness().details
            assert details["paused"] == ["viettel"] and details["failing_over"] == []
    assert not to(sim_a, ON_NET)
    events = obs.statuses("p")
    assert [e["carrier"] for e in events] == ["vinaphone", "vinaphone"]
    assert events[0]["attempts"] == [{"carrier": "viettel", "error": "paused"}]


async def test_ported_file_is_loaded_at_start_and_replaced_on_reload(
    tmp_path: Path, mosquitto: Mosquitto, sim_a: Simulator, sim_b: Simulator
) -> None:
    listed = tmp_path / "ported.csv"
    listed.write_text("number,carrier\n0981110000,vinaphone\n0981110001,vinaphone\n")
    raw = raw_config(tmp_path, mosquitto, sim_a, sim_b)
    raw["routing"] = {"ported_file": str(listed)}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw))
    async with gateway(load_config(str(path)), path=path) as gw:
        async with Observer(mosquitto) as obs:
            await obs.submit(id="listed", to="0981110000", text="x")
            await obs.wait_final(["listed"])
            listed.write_text("0981110001,vinaphone\n0981110002,vinaphone\n")
            assert await gw.reload()
    # Straight to B: A never refused it.
    assert sim_a.stats()["submits_rejected"] == 0
    assert [(e["carrier"], e["attempts"]) for e in obs.statuses("listed")] == [
        ("vinaphone", []),
        ("vinaphone", []),
    ]
    with sqlite3.connect(gw.config.store.path) as conn:
        rows = conn.execute("SELECT number, carrier, source FROM ported ORDER BY number")
        assert rows.fetchall() == [
            ("84981110001", "vinaphone", "file"),
            ("84981110002", "vinaphone", "file"),
        ]


async def test_link_lost_mid_window_is_reported_and_later_jobs_fail_over(
    tmp_path: Path, mosquitto: Mosquitto, sim_a: Simulator, sim_b: Simulator
) -> None:
    sim_a.set_faults(response_delay=2.0)  # submits sit in A's window
    config = two_carriers(
        tmp_path,
        mosquitto,
        sim_a,
        sim_b,
        a_extra={"failover_after": "0.5s", "failover_after_high": "0.5s"},
    )
    async with gateway(config):
        async with Observer(mosquitto) as obs:
            for i in range(3):
                await obs.submit(id=f"w-{i}", to=f"098222000{i}", text="x")
            await obs.wait_for(lambda: len(sim_a.submits) == 3)
            await sim_a.stop()  # the link goes with the three in the window
            await obs.submit(id="after", to="0982220009", text="x")
            await obs.wait_final(["w-0", "w-1", "w-2", "after"], timeout=10)
    for i in range(3):
        (final,) = obs.final(f"w-{i}")
        assert (final["status"], final["carrier"]) == ("failed", "viettel")
        assert final["error"]["code"] == "unknown_outcome" and final["attempts"] == []
    window = {f"8498222000{i}" for i in range(3)}
    assert not any(s.pdu.destination_addr in window for s in sim_b.submits)
    assert [e["carrier"] for e in obs.statuses("after")] == ["vinaphone", "vinaphone"]
    assert obs.statuses("after")[0]["attempts"] == [{"carrier": "viettel", "error": "down"}]
