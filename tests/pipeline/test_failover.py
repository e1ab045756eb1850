"""Failover's decisions on a real store, SQLite and PostgreSQL: which outcome moves a job,
where to, and what it keeps (lane, arrival order, attempts); and the chains planned at
intake (on PostgreSQL from the ported numbers every gateway of the cluster shares)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppgw.config import Config
from smppgw.config.loader import parse_config
from smppgw.ops.metrics import Metrics
from smppgw.ops.telemetry import Telemetry
from smppgw.pipeline.failover import Failover, plan_chain
from smppgw.pipeline.ported import PortedLookup, parse_ported_csv
from smppgw.pipeline.routing import Router
from smppgw.store import JobState, Store, StoreAPI, StoredJob
from smppgw.store.pg import PostgresStore
from smppgw.store.routes import learn
from smppgw.store.schema import _CREATE, _CREATE_V2, SCHEMA_VERSION
from smppgw.store.writer import Tx

from support.servers import Postgres


def config(tmp_path: Path, **viettel: Any) -> Config:
    def carrier(name: str, prefixes: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "host": "127.0.0.1",
            "port": 2775,
            "system_id": "s",
            "password": "p",
            "prefixes": prefixes,
            **extra,
        }

    return parse_config(
        {
            "store": {"path": str(tmp_path / "gw.db")},
            "carriers": [
                carrier(
                    "viettel",
                    ["8498"],
                    **{
                        "failover": ["vinaphone", "mobifone"],
                        "failover_on": ["ESME_RINVDSTADR", "0x45"],
                        **viettel,
                    },
                ),
                carrier("vinaphone", ["8491"]),
                carrier("mobifone", ["8490"], failover=["viettel"]),
            ],
        }
    )


class Ready:
    ready = True

    def evict(self, select: Any, max_lane: int) -> list[Any]:
        return []


def make_failover(cfg: Config, store: StoreAPI, woken: list[str]) -> Failover:
    return Failover(
        cfg,
        Router(cfg.carriers, cfg.routing),
        store,
        Telemetry(Metrics(process_metrics=False)),
        carriers={"viettel": Ready(), "vinaphone": Ready(), "mobifone": Ready()},
        feeders={},
        paused=set(),
        wake=woken.append,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """``open_store(node)``: the test's store, a gateway's view of it (SQLite: one file;
    PostgreSQL: one database, ``node`` the gateway)."""
    if request.param == "sqlite":
        # The gateway's default writer: a process (``pick`` and the rest must pickle).
        yield lambda node="gw-a": Store(str(tmp_path / "gw.db"), writer="process")
        return
    server: Postgres = request.getfixturevalue("postgres_server")
    dsn = server.create_database()
    yield lambda node="gw-a": PostgresStore(dsn, node=node)
    server.drop_database(dsn)


@pytest.fixture
async def setup(tmp_path: Path, open_store: Any) -> AsyncIterator[tuple[Failover, Any, list[str]]]:
    cfg = config(tmp_path)
    woken: list[str] = []
    async with open_store() as store:
        yield make_failover(cfg, store, woken), store, woken


async def ported_to(failover: Failover, number: str) -> str | None:
    """What intake's lookup answers for ``number``, whichever backend."""
    lookup = failover.ported
    if isinstance(lookup, PortedLookup):
        return lookup.carrier(number)
    return await lookup.carrier(number)


async def claimed(store: StoreAPI, job_id: str, lane: int = 1) -> StoredJob:
    """A job routed to viettel with its chain, claimed (as a carrier holds it)."""
    job = StoredJob(
        job_id=job_id,
        carrier="viettel",
        lane=lane,
        destination="84981234567",
        text="hi",
        chain=("viettel", "vinaphone", "mobifone"),
    )
    await store.add_jobs([job])
    (got,) = await store.claim("viettel", 1, 2e9)
    return got


async def test_a_failover_on_refusal_moves_the_job_keeping_its_place(
    setup: tuple[Failover, Any, list[str]],
) -> None:
    failover, store, woken = setup
    job = await claimed(store, "a", lane=0)
    assert await failover.after_failure("viettel", job, "rejected", "ESME_RINVDSTADR", 0)
    assert woken == ["vinaphone"]
    view = await store.job("a")
    assert view is not None and (view.carrier, view.state, view.lane) == ("vinaphone", "queued", 0)
    assert view.attempts == (("viettel", "ESME_RINVDSTADR"),)
    assert await store.queue_depths() == {("vinaphone", 0): 1}
    # On vinaphone it is claimed like any of its jobs, its attempts with it; a refusal by
    # vinaphone (no failover_on of its own) ends it there.
    (again,) = await store.claim("vinaphone", 10, 2e9)
    assert again.attempts == (("viettel", "ESME_RINVDSTADR"),)
    assert not await failover.after_failure("vinaphone", again, "rejected", "ESME_RINVDSTADR", 0)


@pytest.mark.parametrize(
    ("status", "code", "accepted", "moves"),
    [
        ("rejected", "0x00000045", 0, True),  # a vendor-style hex code, listed as 0x45
        ("failed", "retries_exhausted", 0, True),
        ("rejected", "ESME_RINVDSTADR", 1, False),  # a part was accepted: never moves
        ("failed", "unknown_outcome", 0, False),  # no double send
        ("failed", "shutdown", 0, False),
        ("rejected", "ESME_RINVSRCADR", 0, False),  # not in failover_on
        ("expired", "ttl", 0, False),
        ("rejected", "text", 0, False),
    ],
)
async def test_which_outcomes_move_a_job(
    setup: tuple[Failover, Any, list[str]], status: str, code: str, accepted: int, moves: bool
) -> None:
    failover, store, _ = setup
    job = await claimed(store, "j")
    assert await failover.after_failure("viettel", job, status, code, accepted) is moves
    view = await store.job("j")
    assert view is not None
    assert view.carrier == ("vinaphone" if moves else "viettel")
    assert view.state == ("queued" if moves else JobState.SENDING.label)


async def test_a_job_without_a_chain_never_moves(
    setup: tuple[Failover, Any, list[str]],
) -> None:
    failover, store, _ = setup
    await store.add_jobs([StoredJob("f", "viettel", 1, "84981234567", "hi")])
    (job,) = await store.claim("viettel", 1, 2e9)
    assert not await failover.after_failure("viettel", job, "rejected", "ESME_RINVDSTADR", 0)


async def test_the_chain_skips_carriers_tried_and_ends_when_all_were(
    setup: tuple[Failover, Any, list[str]],
) -> None:
    failover, store, _ = setup
    job = await claimed(store, "c")
    assert await failover.after_failure("viettel", job, "failed", "retries_exhausted", 0)
    (job,) = await store.claim("vinaphone", 1, 2e9)
    assert await failover.after_failure("vinaphone", job, "failed", "retries_exhausted", 0)
    (job,) = await store.claim("mobifone", 1, 2e9)
    assert job.attempts == (("viettel", "retries_exhausted"), ("vinaphone", "retries_exhausted"))
    # Every carrier of the chain tried: it ends on mobifone (the caller reports it).
    assert not await failover.after_failure("mobifone", job, "failed", "retries_exhausted", 0)


async def test_learned_port_and_forgotten_port(setup: tuple[Failover, Any, list[str]]) -> None:
    failover, _, _ = setup
    ported = StoredJob(
        "p", "vinaphone", 1, "84981110000", "x", attempts=(("viettel", "ESME_RINVDSTADR"),)
    )
    await failover.after_submit("vinaphone", ported)
    failover.ported.open()
    try:
        assert await ported_to(failover, "84981110000") == "vinaphone"
        assert await failover.plan("84981110000", None, None) == (
            "vinaphone",
            ("vinaphone", "viettel", "mobifone"),
        )
        # Down-moves teach nothing.
        down = StoredJob("d", "vinaphone", 1, "84981110001", "x", attempts=(("viettel", "down"),))
        await failover.after_submit("vinaphone", down)
        assert await ported_to(failover, "84981110001") is None
        # Back home: the mapping is forgotten.
        home = StoredJob(
            "h", "viettel", 1, "84981110000", "x", attempts=(("vinaphone", "ESME_RINVDSTADR"),)
        )
        await failover.after_submit("viettel", home)
        assert await ported_to(failover, "84981110000") is None
    finally:
        failover.ported.close()


def test_plan_chain(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    router = Router(cfg.carriers, cfg.routing)
    configs = {c.name: c for c in cfg.carriers}
    number = "84981234567"
    assert plan_chain(router, configs, number, None) == (
        "viettel",
        ("viettel", "vinaphone", "mobifone"),
    )
    assert plan_chain(router, configs, number, None, "viettel") == ("viettel", ())
    assert plan_chain(router, configs, number, None, "viettel", True)[1][0] == "viettel"
    assert plan_chain(router, configs, number, None, None, False) == ("viettel", ())
    # A carrier without failover, and a ported number whose carrier is gone from the config.
    assert plan_chain(router, configs, "84911234567", None) == ("vinaphone", ())
    assert plan_chain(router, configs, number, "gmobile")[0] == "viettel"
    assert plan_chain(router, configs, "84911234567", "viettel") == (
        "viettel",
        ("viettel", "vinaphone"),
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["0", "84", "+84 ", "0084"]),
            st.integers(100_000_000, 999_999_999).map(str),  # a national number without its 0
            st.sampled_from(["viettel", "vinaphone"]),
        ),
        max_size=20,
    )
)
def test_ported_csv_normalises_numbers_and_the_last_line_wins(
    rows: list[tuple[str, str, str]],
) -> None:
    text = "".join(f"{lead}{digits},{carrier}\n" for lead, digits, carrier in rows)
    parsed = parse_ported_csv(text, "84", ["viettel", "vinaphone"])
    assert parsed.problems == []
    expected: dict[str, str] = {}
    for _, digits, carrier in rows:
        expected.pop("84" + digits, None)
        expected["84" + digits] = carrier
    assert dict(parsed.entries) == expected


async def test_a_version_2_database_is_upgraded_keeping_its_jobs(tmp_path: Path) -> None:
    path = str(tmp_path / "v2.db")
    conn = sqlite3.connect(path)
    for statement in _CREATE + _CREATE_V2:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO jobs (job_id, carrier, state, destination, text, received_at)"
        " VALUES ('old', 'viettel', 0, '84981234567', 'hi', 1.0)"
    )
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    async with Store(path) as store:
        (job,) = await store.claim("viettel", 10, 2e9)
        assert (job.job_id, job.chain, job.attempts) == ("old", (), ())
        await store.learn_port("84981110000", "vinaphone", 60.0)
        assert await store.count_ported() == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


class Down(Ready):
    ready = False


async def test_a_down_carrier_s_queued_jobs_move_by_the_monitor(
    tmp_path: Path, open_store: Any
) -> None:
    """viettel has no bind (failover_after 0): the monitor moves its queued jobs with a
    chain to the first usable carrier, high lane first; a job without one stays."""
    cfg = config(tmp_path, failover_after=0, failover_after_high=0)
    woken: list[str] = []
    async with open_store() as store:
        failover = make_failover(cfg, store, woken)
        failover._carriers = {"viettel": Down(), "vinaphone": Ready(), "mobifone": Ready()}
        jobs = [
            StoredJob(f"j{i}", "viettel", i % 3, "84981234567", "hi", chain=CHAIN) for i in range(6)
        ]
        await store.add_jobs([*jobs, StoredJob("plain", "viettel", 1, "84981234567", "x")])
        task = asyncio.create_task(failover.run())
        try:
            for _ in range(100):  # bounded: 5 s
                if await store.queue_depths() == {("viettel", 1): 1, **MOVED}:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert await store.queue_depths() == {("viettel", 1): 1, **MOVED}
        claimed = await store.claim("vinaphone", 10, 2e9)
        assert [j.job_id for j in claimed] == ["j0", "j3", "j1", "j4", "j2", "j5"]
        assert {j.attempts for j in claimed} == {(("viettel", "down"),)}
        assert "vinaphone" in woken


CHAIN = ("viettel", "vinaphone", "mobifone")
MOVED = {("vinaphone", 0): 2, ("vinaphone", 1): 2, ("vinaphone", 2): 2}


async def test_a_port_learned_by_one_gateway_routes_the_next_job_on_another(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Two gateways on one PostgreSQL store: gw-a learns 84981110000 → vinaphone from a
    refusal; gw-b's very next plan for that number goes to vinaphone (no cache, nothing
    stale), and gw-a's forgetting it sends gw-b's next job home again. A job gw-a holds
    cannot be moved by gw-b."""
    cfg = config(tmp_path)
    async with (
        PostgresStore(postgres_dsn, node="gw-a") as a,
        PostgresStore(postgres_dsn, node="gw-b") as b,
    ):
        gw_a, gw_b = make_failover(cfg, a, []), make_failover(cfg, b, [])
        number = "84981110000"
        assert await gw_b.plan(number, None, None) == ("viettel", CHAIN)
        refused = StoredJob(
            "p", "vinaphone", 1, number, "x", attempts=(("viettel", "ESME_RINVDSTADR"),)
        )
        await gw_a.after_submit("vinaphone", refused)
        assert await gw_b.plan(number, None, None) == (
            "vinaphone",
            ("vinaphone", "viettel", "mobifone"),
        )
        home = StoredJob(
            "h", "viettel", 1, number, "x", attempts=(("vinaphone", "ESME_RINVDSTADR"),)
        )
        await gw_a.after_submit("viettel", home)
        assert await gw_b.plan(number, None, None) == ("viettel", CHAIN)

        held = await claimed(a, "held")
        assert not await b.move_job(held.job_id, "viettel", "vinaphone", "ESME_RINVDSTADR")
        assert await a.move_job(held.job_id, "viettel", "vinaphone", "ESME_RINVDSTADR")


class Holding(Ready):
    """A carrier with a bind or not (``ready``), holding unsent jobs it hands over."""

    def __init__(self, ready: bool, held: list[str]) -> None:
        self.ready = ready
        self.held = held

    def evict(self, select: Any, max_lane: int) -> list[Any]:
        taken = [
            message for message in (Message(job_id) for job_id in self.held) if select(message)
        ]
        self.held = []
        return taken


class Message:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.context = None


async def wait_for(check: Any, seconds: float = 15.0) -> bool:
    """Bounded; generous because it returns as soon as ``check`` holds: 2 s alone, but a
    full suite beside a benchmark once took over 5 s to see the hand-back."""
    for _ in range(int(seconds / 0.05)):  # bounded
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_carrier_down_on_one_gateway_only_stays_with_the_cluster(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """gw-a lost its viettel binds, gw-b has one: gw-a hands back the unsent job it held
    and moves nothing (gw-b sends the queue); once viettel is down on gw-b too, the
    jobs move to vinaphone, each once."""
    cfg = config(tmp_path, failover_after=0, failover_after_high=0)
    async with (
        PostgresStore(postgres_dsn, node="gw-a") as a,
        PostgresStore(postgres_dsn, node="gw-b") as b,
    ):
        await a.add_jobs(
            [StoredJob(f"j{i}", "viettel", 1, "84981234567", "hi", chain=CHAIN) for i in range(3)]
        )
        (held,) = await a.claim("viettel", 1, 2e9)
        gw_a, gw_b = make_failover(cfg, a, []), make_failover(cfg, b, [])
        a_viettel, b_viettel = Holding(False, [held.job_id]), Holding(True, [])
        gw_a._carriers = {"viettel": a_viettel, "vinaphone": Ready(), "mobifone": Ready()}
        gw_b._carriers = {"viettel": b_viettel, "vinaphone": Ready(), "mobifone": Ready()}
        tasks = [asyncio.create_task(gw.run()) for gw in (gw_b, gw_a)]
        try:

            async def handed_back() -> bool:
                return await a.queue_depths() == {("viettel", 1): 3}

            assert await wait_for(handed_back)
            await asyncio.sleep(1.0)  # two RESCANs: still nothing moved
            assert await a.queue_depths() == {("viettel", 1): 3}

            b_viettel.ready = False

            async def moved() -> bool:
                return await a.queue_depths() == {("vinaphone", 1): 3}

            assert await wait_for(moved)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        jobs = await a.claim("vinaphone", 10, 2e9)
        assert [j.attempts for j in jobs] == [(("viettel", "down"),)] * 3


async def test_a_turns_ported_lookups_share_one_read_transaction_ended_next_turn(
    tmp_path: Path,
) -> None:
    """SQLite: from its second lookup on, a turn's lookups read one snapshot (one WAL read
    transaction instead of one per job); the next turn ends it, so a mapping committed
    meanwhile is seen from then on and no read transaction outlives its turn. A turn
    with one lookup opens none."""
    async with Store(str(tmp_path / "gw.db"), writer="process") as store:
        lookup = PortedLookup(store.path)
        lookup.open()
        other = sqlite3.connect(store.path, isolation_level=None, timeout=5.0)
        try:
            assert lookup.carrier("84981110009") is None
            conn = lookup._conn
            assert conn is not None and not conn.in_transaction  # one lookup: a statement
            assert lookup.carrier("84981110000") is None
            assert conn.in_transaction  # the second: held for the rest of the turn
            tx = Tx(other, time.time())
            learn(tx, "84981110000", "vinaphone", 3600.0)  # another connection commits
            assert lookup.carrier("84981110000") is None  # the turn's snapshot
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert not conn.in_transaction  # ended by the next turn
            assert lookup.carrier("84981110000") == "vinaphone"
            assert lookup.carrier("84981110001") is None
            assert conn.in_transaction
        finally:
            other.close()
            lookup.close()
        assert lookup._conn is None
