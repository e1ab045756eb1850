"""``send_at`` and held jobs against a real gateway, mosquitto, simulator and SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppgw.gateway import Gateway
from smppgw.mqtt.schema import parse_send_at
from smppgw.pipeline.holds import GO, Decision, HoldReason, HoldUntil, Reject
from smppgw.sim.server import Simulator
from smppgw.store import Store, StoredJob

from gateway.harness import Observer, gateway_config, running
from pipeline.test_cancel import ask, stack
from support.broker import Mosquitto

TO = "0981234567"
ICT = timezone(timedelta(hours=7))


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, **top: Any
) -> AsyncIterator[tuple[Gateway, Observer]]:
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel}, **top)
    async with running(config) as gw, Observer(mosquitto) as obs:
        yield gw, obs


def statuses(obs: Observer, job_id: str) -> list[str]:
    return [e["status"] for e in obs.statuses(job_id)]


def held(gw: Gateway, reason: str = "send_at") -> int:
    return gw.store.held_counts().get(reason, 0)


async def test_a_job_is_held_until_send_at_then_sent(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with gateway(tmp_path, mosquitto, viettel) as (gw, obs):
        due = datetime.now(ICT).replace(microsecond=0) + timedelta(seconds=2)
        await obs.submit(id="s-1", to=TO, text="reminder", send_at=due.isoformat())
        await obs.wait_for(lambda: bool(obs.statuses("s-1")))
        (scheduled,) = obs.statuses("s-1")
        # RFC 3339 in UTC: the same instant as the +07:00 time published.
        assert scheduled["status"] == "scheduled"
        assert scheduled["send_at"] == f"{due.astimezone(UTC):%Y-%m-%dT%H:%M:%S}.000Z"
        assert held(gw) == 1 and viettel.submits == []
        view = await gw.store.job("s-1")
        assert view is not None and view.state == "held"
        await obs.wait_final(["s-1"], timeout=10)
        assert statuses(obs, "s-1") == ["scheduled", "submitted", "delivered"]
        (submit,) = viettel.submits
        sent_at = submit.at + (time.time() - time.monotonic())  # the simulator's clock
        assert due.timestamp() - 0.05 <= sent_at < due.timestamp() + 1.0
        assert held(gw) == 0
        gw.telemetry.jobs_held(gw.store.held_counts())
        assert gw.metrics.jobs_held.labels(reason="send_at")._value.get() == 0


async def test_due_jobs_are_released_in_priority_order(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with gateway(tmp_path, mosquitto, viettel) as (gw, obs):
        due = time.time() + 1.5  # epoch seconds
        for job_id, priority in (("p-low", "low"), ("p-normal", "normal"), ("p-high", "high")):
            await obs.submit(id=job_id, to=TO, text=job_id, priority=priority, send_at=due)
        await obs.wait_for(lambda: held(gw) == 3)
        gw.telemetry.jobs_held(gw.store.held_counts())
        assert gw.metrics.jobs_held.labels(reason="send_at")._value.get() == 3
        await obs.wait_final(["p-low", "p-normal", "p-high"], timeout=10)
        texts = [s.pdu.short_message.decode() for s in viettel.submits]
        assert texts == ["p-high", "p-normal", "p-low"]


async def test_one_timer_rearmed_for_an_earlier_job_and_no_polling_while_held(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with gateway(tmp_path, mosquitto, viettel) as (gw, obs):
        later = time.time() + 3600
        for i in range(300):
            await obs.submit(id=f"later-{i}", to=TO, text="x", send_at=later)
        await obs.wait_for(lambda: sum(len(obs.statuses(f"later-{i}")) for i in range(300)) == 300)
        # Held jobs wait without work: over 1.5 s the store sees only the metrics refresh
        # and the outbox's last acknowledgements (a few operations), not a query per held
        # job nor a poll of them (300 held: that would be hundreds).
        await asyncio.sleep(0.5)
        before = gw.store.stats().operations
        await asyncio.sleep(1.5)
        assert gw.store.stats().operations - before < 30
        # A job due before the armed timer re-arms it and goes on time.
        soon = time.time() + 1.0
        await obs.submit(id="soon", to=TO, text="x", send_at=soon)
        await obs.wait_final(["soon"], timeout=5)
        assert len(viettel.submits) == 1 and held(gw) == 300
        assert await gw.store.next_held() == pytest.approx(later)


async def test_a_job_with_send_at_in_the_past_goes_at_once(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with gateway(tmp_path, mosquitto, viettel) as (_, obs):
        await obs.submit(id="past", to=TO, text="x", send_at=time.time() - 60)
        await obs.wait_final(["past"])
        assert statuses(obs, "past") == ["submitted", "delivered"]


async def test_a_held_job_is_cancelled(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with stack(tmp_path, mosquitto, viettel) as (gw, obs):
        await obs.submit(id="h-1", to=TO, text="x", send_at=time.time() + 60)
        await obs.wait_for(lambda: held(gw) == 1)
        got = await ask(mosquitto, obs, [("sms/cancel", b'{"id": "h-1"}', "c")])
        assert got == {b"c": {"id": "h-1", "cancelled": True}}
        await obs.wait_for(lambda: len(obs.statuses("h-1")) == 2)
        assert statuses(obs, "h-1") == ["scheduled", "cancelled"]
        assert held(gw) == 0
        assert await gw.store.next_held() is None
        assert viettel.submits == []


async def test_invalid_send_at_and_expect_reply_are_rejected_naming_the_field(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    far = datetime.now(UTC) + timedelta(minutes=10)
    cases = {
        "bad-1": ({"send_at": "tomorrow 9am"}, "send_at: expected an RFC 3339 time with offset"),
        "bad-2": ({"send_at": "2026-12-06T09:00:00"}, "send_at: expected an RFC 3339 time"),
        "bad-3": ({"send_at": True}, "send_at: expected an RFC 3339 time with offset or epoch"),
        "bad-4": (
            {"send_at": far.isoformat(), "ttl": 60},
            "send_at: " + f"{far:%Y-%m-%dT%H:%M}",
        ),
        "bad-5": ({"expect_reply": 0}, "expect_reply: expected whole seconds from 1 to 604800"),
        "bad-6": ({"expect_reply": 8 * 86400}, "expect_reply: expected whole seconds"),
        "bad-7": ({"expect_reply": "60"}, "expect_reply: expected whole seconds"),
        "bad-8": ({"send_at": "2026-02-30T09:00:00+07:00"}, "send_at: not a valid time"),
    }
    async with gateway(tmp_path, mosquitto, viettel) as (gw, obs):
        for job_id, (fields, _) in cases.items():
            await obs.submit(id=job_id, to=TO, text="x", **fields)
        await obs.wait_final(list(cases))
        for job_id, (_, reason) in cases.items():
            (event,) = obs.statuses(job_id)
            assert event["status"] == "rejected" and event["error"]["code"] == "invalid"
            assert event["error"]["reason"].startswith(reason), (job_id, event)
        assert "ttl runs out" in obs.statuses("bad-4")[0]["error"]["reason"]
        assert held(gw) == 0 and viettel.submits == []


async def test_release_checks_hold_again_reject_and_ttl_still_expires(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    """The hook the marketing rules use: a check consulted at intake and at release."""
    seen: list[tuple[str, float]] = []

    async def check(job: StoredJob, now: float) -> Decision:
        seen.append((job.job_id, now))
        if job.job_id == "window":  # outside the window: held far beyond its ttl
            return HoldUntil(now + 3600, HoldReason.WINDOW)
        if job.job_id == "optout":
            return Reject("opted_out", "destination opted out")
        if job.job_id == "boom":
            raise RuntimeError("a broken rule")  # logged; the job is let go
        if job.job_id == "later" and len([s for s in seen if s[0] == "later"]) == 1:
            return HoldUntil(now + 1.0, HoldReason.CAP)  # deferred once, then allowed
        return GO

    async with gateway(tmp_path, mosquitto, viettel) as (gw, obs):
        gw.holds.add_check(check)
        soon = time.time() + 0.5
        await obs.submit(id="window", to=TO, text="x", send_at=soon, ttl=3)
        await obs.submit(id="optout", to=TO, text="x", send_at=soon)
        await obs.submit(id="later", to=TO, text="x")  # checked at intake: deferred
        await obs.submit(id="plain", to=TO, text="x")
        await obs.submit(id="boom", to=TO, text="x", send_at=soon)
        await obs.wait_final(["window", "optout", "later", "plain", "boom"], timeout=10)
        assert statuses(obs, "boom") == ["scheduled", "submitted", "delivered"]
        assert statuses(obs, "optout") == ["scheduled", "rejected"]
        assert obs.statuses("optout")[1]["error"]["code"] == "opted_out"
        assert statuses(obs, "later") == ["scheduled", "submitted", "delivered"]
        assert statuses(obs, "plain") == ["submitted", "delivered"]
        # Held again for the window (a second scheduled event with the new time), then
        # its ttl ran out while held.
        window = obs.statuses("window")
        assert [e["status"] for e in window] == ["scheduled", "scheduled", "expired"]
        assert window[0]["send_at"] != window[1]["send_at"]
        assert window[2]["error"]["code"] == "ttl"
        assert [s.pdu.short_message for s in viettel.submits] == [b"x", b"x", b"x"]
        assert sum(held(gw, r) for r in ("send_at", "window", "cap")) == 0


async def test_held_jobs_survive_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    due = time.time() + 2.0
    async with gateway(tmp_path, mosquitto, viettel) as (gw, obs):
        await obs.submit(id="r-1", to=TO, text="x", send_at=due)
        await obs.wait_for(lambda: held(gw) == 1)
    await asyncio.sleep(max(0.0, due - time.time()) + 0.5)  # due while the gateway was down
    assert viettel.submits == []
    async with gateway(tmp_path, mosquitto, viettel) as (gw, obs):
        await obs.wait_final(["r-1"], timeout=10)
        assert len(viettel.submits) == 1


# -- parsing ------------------------------------------------------------------------------
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_rfc3339_with_any_offset_is_the_instant_it_names(moment: datetime, minutes: int) -> None:
    local = moment.astimezone(timezone(timedelta(minutes=minutes)))
    text = local.isoformat()
    assert parse_send_at(text) == (pytest.approx(moment.timestamp(), abs=1e-6), None)
    if local.utcoffset() == timedelta(0):
        assert parse_send_at(text.replace("+00:00", "Z"))[0] == pytest.approx(moment.timestamp())


@given(st.text(max_size=40))
def test_parse_send_at_never_raises(text: str) -> None:
    value, problem = parse_send_at(text)
    assert (value is None) != (problem is None)


# -- the store ----------------------------------------------------------------------------
async def test_version_2_database_is_upgraded_and_can_hold(tmp_path: Path) -> None:
    from smppgw.store.schema import _CREATE, _CREATE_V2, SCHEMA_VERSION

    path = str(tmp_path / "gw.db")
    conn = sqlite3.connect(path)
    for statement in _CREATE + _CREATE_V2:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO jobs (job_id, carrier, lane, state, destination, text, received_at)"
        " VALUES ('old', 'viettel', 1, 0, '84981234567', 'x', 1.0)"
    )
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    async with Store(path) as store:
        assert await store.queue_depths() == {("viettel", 1): 1}
        assert await store.hold("old", time.time() + 60, "send_at", send_at=time.time() + 60)
        assert store.held_counts() == {"send_at": 1}
        assert await store.queue_depths() == {}
        assert await store.claim("viettel", 10, time.time()) == []
        (due,) = await store.due_held(time.time() + 61, 10)
        assert due.job_id == "old" and due.hold_reason == "send_at"
        assert await store.release_held(["old"]) == [("viettel", 1)]
        assert [j.job_id for j in await store.claim("viettel", 10, time.time())] == ["old"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"reply_windows", "jobs_held"} <= tables
