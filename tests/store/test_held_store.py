"""Held jobs and reply windows in the store contract (issue 14), on SQLite and on a real
PostgreSQL (the ``store`` / ``backend`` fixtures): a held job is added with its event in
one transaction, never claimed while held, released once into its lane, cancellable;
a submitted ``expect_reply`` job opens a window that the newest job wins."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from smppgw.store import JobState, OutboxEvent, ReplyWindow, StoredJob
from store.conftest import Backend
from store.test_store import CARRIER, claim_ids, job, status_events

NUMBER = "84981234567"


def mo_events(window: ReplyWindow | None) -> list[OutboxEvent]:
    """An MO's events naming the window it was built with (module-level: it pickles to a
    writer process)."""
    tied = "nothing" if window is None else window.job_id
    return [OutboxEvent("sms/inbound/viettel", f"mo for {tied}".encode())]


def no_events(window: ReplyWindow | None) -> list[OutboxEvent]:
    return []


def held(job_id: str, until: float, lane: int = 1, reason: str = "send_at") -> StoredJob:
    scheduled = OutboxEvent("sms/status/viettel", f'{{"id": "{job_id}"}}'.encode())
    return replace(
        job(job_id, lane),
        held_until=until,
        hold_reason=reason,
        send_at=until,
        events=(scheduled,),
    )


async def refreshed_counts(store: Any) -> dict[str, int]:
    """``held_counts`` as the metrics see it (PostgreSQL refreshes it each lease round)."""
    refresh = getattr(store, "refresh_held", None)
    if refresh is not None:
        await refresh()
    counts: dict[str, int] = store.held_counts()
    return counts


async def test_a_held_job_is_added_with_its_event_and_never_claimed_while_held(
    store: Any,
) -> None:
    later = time.time() + 3600
    assert await store.add_jobs([held("h1", later), held("h1", later)]) == [True, False]
    assert [e.payload for e in await store.pending_events(10)] == [b'{"id": "h1"}']
    view = await store.job("h1")
    assert (view.state, view.held_until, view.hold_reason) == ("held", later, "send_at")
    assert view.send_at == later
    assert await claim_ids(store) == []
    assert await store.next_held() == pytest.approx(later)
    assert await refreshed_counts(store) == {"send_at": 1}
    assert await store.count_waiting(None) == 1  # held is "not yet submitted"
    assert not await store.retry_later("h1", 1, 0.0)  # a retry never frees a held job


async def test_due_jobs_come_by_lane_then_arrival_and_are_released_once(store: Any) -> None:
    now = time.time()
    await store.add_jobs(
        [held("bulk", now - 5, lane=2), held("otp", now - 1, lane=0), held("far", now + 3600)]
    )
    due = await store.due_held(now, 10)
    assert [j.job_id for j in due] == ["otp", "bulk"]
    assert [j.held_until for j in due] == [pytest.approx(now - 1), pytest.approx(now - 5)]
    assert due[0].send_at == pytest.approx(now - 1)
    assert await store.release_held(["otp", "bulk"]) == [(CARRIER, 0), (CARRIER, 2)]
    assert await store.release_held(["otp", "bulk"]) == []  # no longer held
    assert await claim_ids(store) == ["otp", "bulk"]
    view = await store.job("otp")
    assert (view.held_until, view.hold_reason) == (None, None)
    assert await refreshed_counts(store) == {"send_at": 1}


async def test_hold_again_moves_the_time_and_a_claimed_job_cannot_be_held(store: Any) -> None:
    now = time.time()
    await store.add_jobs([held("h", now + 60), job("q")])
    event = OutboxEvent("sms/status/viettel", b"again")
    assert await store.hold("h", now + 120, "window", [event], send_at=now + 130)
    view = await store.job("h")
    assert (view.held_until, view.hold_reason, view.send_at) == (now + 120, "window", now + 130)
    assert await store.hold("q", now + 60, "cap")  # a queued job may be held
    assert await claim_ids(store) == []
    await store.release_held(["q"])
    assert await claim_ids(store) == ["q"]
    assert not await store.hold("q", now + 60, "cap")  # claimed: not held
    assert await refreshed_counts(store) == {"window": 1}


async def test_a_held_job_is_cancelled_and_never_released(store: Any) -> None:
    now = time.time()
    await store.add_jobs([held("h", now - 1)])
    view, cancelled = await store.cancel_queued("h", status_events)
    assert cancelled and (view.state, view.status) == ("final", "cancelled")
    assert await store.due_held(now, 10) == []
    assert await store.release_held(["h"]) == []
    assert await store.next_held() is None
    assert (await store.job("h")).held_until is None
    assert [v.job_id for v in await store.list_jobs(state=JobState.HELD)] == []


async def test_submitting_an_expect_reply_job_opens_its_window_newest_wins(
    store: Any, backend: Backend
) -> None:
    older = replace(job("ask-1"), destination=NUMBER, expect_reply=600, response_topic="app/r")
    newer = replace(older, job_id="ask-2", correlation_data=b"c2")
    plain = replace(job("plain"), destination=NUMBER)
    await store.add_jobs([older, newer, plain])
    await store.claim(CARRIER, 10, time.time())
    for job_id, mid in (("ask-1", "a1"), ("ask-2", "a2"), ("plain", "p1")):
        await store.mark_submitted(job_id, CARRIER, [mid], [mid], False, [])
    events = mo_events
    window = await store.add_mo(NUMBER, time.time(), events)
    assert window is not None
    (made,) = await store.pending_events(10)
    assert made.payload == b"mo for ask-2"  # make_events saw the window returned
    assert (window.job_id, window.response_topic, window.correlation_data) == (
        "ask-2",
        "app/r",
        b"c2",
    )
    assert window.until == pytest.approx(time.time() + 600, abs=5)
    assert await store.add_mo("84900000000", time.time(), events) is None
    assert [e.topic for e in await store.pending_events(10)] == ["sms/inbound/viettel"] * 2
    # Closed windows tie nothing and are purged.
    assert await store.add_mo(NUMBER, time.time() + 601, events) is None
    assert await store.purge_replies(time.time() + 601) == 2
    assert await backend.sql(store, "SELECT count(*) FROM reply_windows") == [(0,)]


async def test_a_reply_window_from_a_merged_submit_batch(store: Any) -> None:
    """Many concurrent ``mark_submitted`` (PostgreSQL merges them into one statement):
    each expect_reply job still opens its window."""
    import asyncio

    jobs = [replace(job(f"m{i}"), destination=f"8498000000{i}", expect_reply=60) for i in range(5)]
    await store.add_jobs(jobs)
    await store.claim(CARRIER, 10, time.time())
    await asyncio.gather(
        *(
            store.mark_submitted(j.job_id, CARRIER, [f"x{i}"], [f"x{i}"], False, [])
            for i, j in enumerate(jobs)
        )
    )
    for i in range(5):
        window = await store.add_mo(f"8498000000{i}", time.time(), no_events)
        assert window is not None and window.job_id == f"m{i}"
