"""The failover half of the store contract (``smppgw.store.routes`` on SQLite,
``smppgw.store.pg.routes`` on PostgreSQL), on both backends: moves keep a job's lane and
arrival order and add to its attempts; the ported-number table's learn / import / forget /
expiry; the intake's lookups merged into one statement give each caller its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

from smppgw.store import StoredJob
from smppgw.store.routes import FILE, IMPORTED, LEARNED
from store.conftest import Backend
from store.test_store import CARRIER

CHAIN = (CARRIER, "vinaphone", "mobifone")


def chained(job_id: str, lane: int = 1, **kw: Any) -> StoredJob:
    return StoredJob(job_id, CARRIER, lane, "84981234567", f"text of {job_id}", chain=CHAIN, **kw)


async def test_a_claimed_job_moves_once_with_its_lane_seq_and_attempts(store: Any) -> None:
    await store.add_jobs([chained("a", lane=0), chained("b", lane=0)])
    claimed = await store.claim(CARRIER, 1, 2e9)
    assert [j.job_id for j in claimed] == ["a"]
    assert claimed[0].chain == CHAIN
    assert await store.move_job("a", CARRIER, "vinaphone", "ESME_RINVDSTADR")
    assert not await store.move_job("a", CARRIER, "mobifone", "again")  # no longer claimed
    assert not await store.move_job("b", CARRIER, "vinaphone", "x")  # queued, not claimed
    view = await store.job("a")
    assert (view.carrier, view.state, view.lane) == ("vinaphone", "queued", 0)
    assert view.attempts == ((CARRIER, "ESME_RINVDSTADR"),)
    (again,) = await store.claim("vinaphone", 10, 2e9)
    assert (again.job_id, again.chain) == ("a", CHAIN)
    assert await store.move_job("a", "vinaphone", "mobifone", "retries_exhausted")
    (third,) = await store.claim("mobifone", 10, 2e9)
    assert third.attempts == ((CARRIER, "ESME_RINVDSTADR"), ("vinaphone", "retries_exhausted"))


class SecondStays:
    """A picker: every job to vinaphone but the second it is asked about; notes what it
    saw (visible here only where the store runs it in this process: not a writer process,
    which runs a copy)."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[str, ...], str]] = []

    def __call__(self, chain: tuple[str, ...], attempts: Any, current: str) -> str | None:
        self.seen.append((chain, current))
        return None if len(self.seen) == 2 else "vinaphone"


async def test_move_queued_follows_pick_lane_by_lane_in_arrival_order(
    store: Any, backend: Backend
) -> None:
    await store.add_jobs(
        [
            chained("low", lane=2),
            chained("high", lane=0),
            StoredJob("plain", CARRIER, 1, "84981234567", "no chain"),
            chained("stay", lane=1),
            chained("normal", lane=1),
        ]
    )
    pick = SecondStays()
    moves = await store.move_queued(CARRIER, 1, pick, "down")
    assert [(m.job_id, m.to, m.lane) for m in moves] == [
        ("high", "vinaphone", 0),
        ("normal", "vinaphone", 1),
    ]
    if backend.name != "sqlite":  # "sqlite": the writer process ran a copy of ``pick``
        # high, stay, normal: not low (lane 2), not plain
        assert pick.seen == [(CHAIN, CARRIER)] * 3
    claimed = await store.claim("vinaphone", 10, 2e9)
    assert [(j.job_id, j.attempts) for j in claimed] == [
        ("high", ((CARRIER, "down"),)),
        ("normal", ((CARRIER, "down"),)),
    ]
    left = await store.claim(CARRIER, 10, 2e9)
    assert [j.job_id for j in left] == ["plain", "stay", "low"]
    assert await store.move_queued(CARRIER, 2, pick, "down") == []  # nothing queued


async def test_ported_numbers_learn_import_forget_and_expire(store: Any) -> None:
    await store.learn_port("84981110000", "vinaphone", 600.0)
    await store.learn_port("84981110009", "mobifone", -1.0)  # already expired
    assert await store.ported_carrier("84981110000") == "vinaphone"
    assert await store.ported_carrier("84981110009") is None
    assert await store.count_ported() == 1

    report = await store.import_ported(
        [("84981110000", "mobifone"), ("84981110001", "mobifone"), ("84981110002", "viettel")],
        FILE,
        replace_source=True,
    )
    assert (report.added, report.changed, report.unchanged, report.removed) == (2, 1, 0, 0)
    assert await store.ported_carrier("84981110000") == "mobifone"  # the list wins
    report = await store.import_ported(
        [("84981110001", "mobifone"), ("84981110003", "vinaphone")], FILE, replace_source=True
    )
    # 0000 and 0002 left the file: removed; 0001 as it was; 0003 new.
    assert (report.added, report.changed, report.unchanged, report.removed) == (1, 0, 1, 2)
    report = await store.import_ported([("84981110001", "viettel")], IMPORTED, replace_source=False)
    assert (report.added, report.changed, report.unchanged, report.removed) == (0, 1, 0, 0)
    assert await store.count_ported() == 2  # 0001 (import), 0003 (file); 0009 expired

    gone = await store.forget_port("84981110001")
    assert gone is not None and (gone.carrier, gone.source, gone.expires_at) == (
        "viettel",
        IMPORTED,
        None,
    )
    assert await store.forget_port("84981110001") is None
    assert await store.purge_ported() == 1  # the expired learned one only
    assert await store.count_ported() == 1
    await store.learn_port("84981110003", "viettel", 600.0)  # evidence replaces the list
    learned = await store.forget_port("84981110003")
    assert learned is not None and (learned.carrier, learned.source) == ("viettel", LEARNED)
    assert await store.count_ported() == 0


async def test_concurrent_lookups_each_get_their_own_number(store: Any) -> None:
    numbers = [f"8498111{i:04d}" for i in range(60)]
    await store.import_ported(
        [(n, "vinaphone") for n in numbers[::2]], IMPORTED, replace_source=False
    )
    found = await asyncio.gather(*(store.ported_carrier(n) for n in numbers))
    assert found == ["vinaphone" if i % 2 == 0 else None for i in range(60)]
