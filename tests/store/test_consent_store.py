"""Consent in the store: opt-outs and the marketing cap decided and counted in the
transaction that takes a job; an MO's consent change, events and replies in one
transaction; bulk operator changes; an upgrade from a version 2 database. The contract
tests run on SQLite and on a real PostgreSQL (the ``store`` / ``backend`` fixtures of
tests/store/conftest.py); the upgrade and locking tests are SQLite's own."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from smppgw.config import ConsentConfig
from smppgw.pipeline.marketing import Go, Hold, MarketingGate, Reject
from smppgw.store import ConsentChange, OutboxEvent, Store, StoredJob, StoreError
from smppgw.store.schema import (
    _CREATE,
    _CREATE_FAILOVER,
    _CREATE_SCHEDULE,
    _CREATE_V2,
    SCHEMA_VERSION,
)
from store.conftest import Backend

CARRIER = "viettel"
NUMBER = "84981234567"
#: Marketing open all day: only the cap and opt-outs decide.
ALWAYS = MarketingGate(replace(ConsentConfig(), marketing_hours="00:00-24:00"))


def job(job_id: str, number: str = NUMBER, category: str = "marketing") -> StoredJob:
    return StoredJob(job_id, CARRIER, 1, number, "[QC] sale", category=category)


def fixed_events(window: object, events: list[OutboxEvent]) -> list[OutboxEvent]:
    """``make_events`` that ignores the window (module-level: it pickles)."""
    return events


def opt_out(number: str = NUMBER, **kw: object) -> ConsentChange:
    event = OutboxEvent("sms/consent", b'{"number": "%s"}' % number.encode())
    return ConsentChange(number, "opt_out", "HUY", "mo", CARRIER, events=[event], **kw)  # type: ignore[arg-type]


async def record_mo(
    store: Any,
    events: list[OutboxEvent],
    change: ConsentChange,
    replies: list[StoredJob] | None = None,
    reply_on_change: list[StoredJob] | None = None,
) -> bool:
    """An MO from NUMBER with ``events`` (as the MO side builds them) and its consent
    change; whether the consent changed."""
    _, changed = await store.record_mo(
        NUMBER,
        time.time(),
        partial(fixed_events, events=list(events)),
        change,
        replies or [],
        reply_on_change or [],
    )
    return changed


async def admit(store: Any, *jobs: StoredJob, gate: MarketingGate = ALWAYS) -> list[object]:
    return list(await store.add_admitted(jobs, [None] * len(jobs), gate))


async def test_opted_out_number_gets_no_marketing_but_transactional_goes(store: Any) -> None:
    assert await record_mo(store, [], opt_out()) is True
    (refused,) = await admit(store, job("m1"))
    assert isinstance(refused, Reject) and refused.code == "opted_out"
    assert await admit(store, job("t1", category="transactional")) == [True]
    assert await admit(store, job("m2", number="84981111111")) == [True]
    assert await store.job("m1") is None  # the intake records the rejection, not this
    assert {j.job_id for j in await store.claim(CARRIER, 10, time.time())} == {"t1", "m2"}


async def test_cap_counts_in_the_same_transaction_and_a_duplicate_costs_nothing(
    store: Any, backend: Backend
) -> None:
    # Four jobs to one number in one batch: the fourth is over the cap, even though none
    # was committed when the batch started.
    results = await admit(store, job("a"), job("b"), job("a"), job("c"), job("d"))
    assert results[:4] == [True, True, False, True]
    assert isinstance(results[4], Reject) and results[4].code == "frequency_cap"
    assert await backend.sql(store, "SELECT count(*) FROM marketing_sends") == [(3,)]
    # Older than 24 h: no longer counted, and purged.
    await backend.sql(store, "UPDATE marketing_sends SET at = at - 86401")
    assert await admit(store, job("e")) == [True]
    assert await store.purge_marketing_sends(time.time() - 86400) == 3


async def test_hold_keeps_the_job_out_of_claims_until_due(store: Any, backend: Backend) -> None:
    closed_now = _closed_gate()
    (held,) = await admit(store, job("h1"), gate=closed_now)
    assert isinstance(held, Hold) and held.reason == "window" and held.until > time.time()
    assert await store.claim(CARRIER, 10, time.time()) == []
    assert await store.next_due(CARRIER) == pytest.approx(held.until)
    (claimed,) = await store.claim(CARRIER, 10, held.until + 1)
    assert claimed.job_id == "h1"
    ((at,),) = await backend.sql(store, "SELECT at FROM marketing_sends")
    assert at == pytest.approx(held.until)  # counted at its release time


def noted_hold(job: StoredJob, until: float, reason: str) -> StoredJob:
    """A hold maker that writes what it was given into the job's text."""
    return replace(job, text=f"{job.job_id} held until {until:.0f} for {reason}")


async def test_a_hold_maker_takes_over_the_holding(store: Any) -> None:
    """With the held-jobs mechanism's hook, the job is added as the hook makes it (there:
    in its held state with its ``scheduled`` event), not parked with ``next_attempt``."""
    (held,) = await store.add_admitted([job("h2")], [None], _closed_gate(), noted_hold)
    assert isinstance(held, Hold)
    assert await store.next_due(CARRIER) is None  # not parked by next_attempt
    (claimed,) = await store.claim(CARRIER, 10, time.time())
    assert claimed.text == f"h2 held until {held.until:.0f} for window"


async def test_release_check_decides_again_and_moves_the_count(
    store: Any, backend: Backend
) -> None:
    """What the held-jobs release hook asks: the number may have opted out meanwhile, or
    used its cap; the job's own count is left out, then moved to its new time."""
    (held,) = await admit(store, job("h1"), gate=_closed_gate())
    assert isinstance(held, Hold)
    now = time.time()
    assert await store.marketing_release("h1", ALWAYS, now) == Go()
    at = "SELECT at FROM marketing_sends WHERE job_id = 'h1'"
    assert (await backend.sql(store, at))[0][0] == pytest.approx(now)
    assert await store.marketing_release("nobody", ALWAYS, now) is None  # not marketing
    # Two more sends fill the cap of 3: h1 itself still fits (its own count left out).
    assert await admit(store, job("m2"), job("m3")) == [True, True]
    assert await store.marketing_release("h1", ALWAYS, now) == Go()
    # Opted out meanwhile: rejected, and no longer counted.
    await record_mo(store, [], opt_out())
    decision = await store.marketing_release("h1", ALWAYS, now)
    assert isinstance(decision, Reject) and decision.code == "opted_out"
    assert await backend.sql(store, at) == []


async def test_mo_consent_change_is_recorded_once_with_its_events_and_replies(
    store: Any,
) -> None:
    inbound = OutboxEvent("sms/inbound/viettel", b"{}")
    reply = StoredJob("smppgw:optout:1", CARRIER, 1, NUMBER, "Da huy")
    assert await record_mo(store, [inbound], opt_out(), reply_on_change=[reply]) is True
    again = replace(reply, job_id="smppgw:optout:2")
    assert await record_mo(store, [inbound], opt_out(), reply_on_change=[again]) is False
    topics = [e.topic for e in await store.pending_events(10)]
    assert topics == ["sms/inbound/viettel", "sms/consent", "sms/inbound/viettel"]
    assert await store.job("smppgw:optout:1") is not None
    assert await store.job("smppgw:optout:2") is None  # no second confirmation
    (record,) = await store.consent_records()
    assert (record.number, record.opted_out, record.keyword, record.source) == (
        NUMBER,
        True,
        "HUY",
        "mo",
    )
    assert await store.consent_counts() == {("opt_out", "mo"): 1}


async def test_implicit_opt_in_never_overrides_an_opt_out(store: Any) -> None:
    first_mo = ConsentChange(NUMBER, "opt_in", "mo", "mo", CARRIER, only_if_unknown=True)
    assert await record_mo(store, [], first_mo) is True
    assert await record_mo(store, [], opt_out()) is True
    assert await record_mo(store, [], replace(first_mo)) is False
    (record,) = await store.consent_records()
    assert record.opted_out


async def test_a_failed_commit_records_nothing_of_the_mo(tmp_path: Path) -> None:
    """The MO, its consent change and its events commit together or not at all: the
    carrier then leaves the deliver_sm unanswered and the SMSC delivers it again."""
    path = str(tmp_path / "locked.db")
    async with Store(path, busy_timeout=0.05) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreError, match="locked"):
                await record_mo(store, [OutboxEvent("sms/inbound/viettel", b"{}")], opt_out())
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert await store.consent_records() == []
        assert await store.pending_events(10) == []
        assert await record_mo(store, [], opt_out()) is True  # and the redelivery records it


async def test_version_2_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.db")
    conn = sqlite3.connect(path)
    for statement in _CREATE + _CREATE_V2:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO jobs (job_id, carrier, state, received_at) VALUES ('old', ?, 0, 1.0)",
        (CARRIER,),
    )
    conn.execute("INSERT INTO tenant_usage (tenant, day, parts) VALUES ('shop', '2026-12-06', 7)")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    async with Store(path) as store:
        assert await store.add_jobs([job("old", category="transactional")]) == [False]
        assert await store.tenant_usage("shop", "2026-12-06") == 7
        assert await record_mo(store, [], opt_out()) is True
        (refused,) = await admit(store, job("m1"))
        assert isinstance(refused, Reject)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_version_4_database_keeps_its_held_jobs(tmp_path: Path) -> None:
    """The release before consent (scheduling): a held job survives the upgrade."""
    path = str(tmp_path / "gw.db")
    conn = sqlite3.connect(path)
    for statement in _CREATE + _CREATE_V2 + _CREATE_FAILOVER + _CREATE_SCHEDULE:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO jobs (job_id, carrier, state, received_at, held_until, hold_reason)"
        " VALUES ('later', ?, -1, 1.0, 4102444800.0, 'send_at')",
        (CARRIER,),
    )
    conn.execute("PRAGMA user_version=4")
    conn.commit()
    conn.close()
    async with Store(path) as store:
        assert await store.next_held() == 4102444800.0
        assert await record_mo(store, [], opt_out()) is True
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def _closed_gate() -> MarketingGate:
    """Hours that exclude the current time, whatever it is: a one-minute window 12 hours
    from now (in UTC)."""
    hour = (time.gmtime().tm_hour + 12) % 24
    hours = f"{hour:02d}:00-{hour:02d}:01"
    return MarketingGate(replace(ConsentConfig(), timezone="UTC", marketing_hours=hours))
