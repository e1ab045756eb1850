"""The whole gateway on ``store.backend: postgres`` (in-process, real mosquitto, real
simulator, real PostgreSQL), ``smppgw migrate``, and two gateways sharing one store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from smppgw.cli import main
from smppgw.sim.server import Simulator
from smppgw.store.pg.schema import SCHEMA_VERSION

from gateway.harness import Observer, gateway_config, running, sim_config
from support.broker import Mosquitto


@pytest.fixture
async def viettel() -> Simulator:
    async with Simulator(sim_config(receipt_delay=0.05, name="viettel")) as sim:
        yield sim


def pg_store(dsn: str, **extra: object) -> dict[str, object]:
    return {"backend": "postgres", "dsn": dsn, **extra}


async def test_jobs_flow_through_a_postgres_store(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, postgres_dsn: str
) -> None:
    config = gateway_config(
        tmp_path,
        mosquitto,
        {"viettel": viettel},
        store=pg_store(postgres_dsn),
        cluster={"node_id": "gw-a"},
    )
    ids = [f"pg-{i}" for i in range(30)]
    async with running(config) as gateway:
        assert gateway.leases is not None
        async with Observer(mosquitto) as obs:
            for job_id in ids:
                await obs.submit(id=job_id, to="0981234567", text=f"order {job_id}")
            await obs.submit(id="pg-0", to="0981234567", text="duplicate")
            await obs.wait_final(ids, timeout=20)
    assert sorted(s.pdu.short_message.decode() for s in viettel.submits) == sorted(
        f"order {i}" for i in ids
    )
    for job_id in ids:
        assert [e["status"] for e in obs.statuses(job_id)] == ["submitted", "delivered"]
    conn = await asyncpg.connect(postgres_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0  # all published
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'delivered'") == 30
        assert await conn.fetchval("SELECT node_id FROM nodes") == "gw-a"
    finally:
        await conn.close()


def test_migrate_command_applies_then_finds_nothing(
    tmp_path: Path, postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "gw.yaml"
    file.write_text(
        "store: {backend: postgres, dsn_env: SMPPGW_TEST_DSN}\n"
        "carriers: [{name: v, host: 127.0.0.1, port: 2775, system_id: s, password: p}]\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SMPPGW_TEST_DSN", postgres_dsn)
        assert main(["migrate", "--config", str(file)]) == 0
        first = capsys.readouterr().out
        assert main(["migrate", "--config", str(file)]) == 0
        second = capsys.readouterr().out
    assert f"schema version {SCHEMA_VERSION} (applied 1" in first
    assert "(nothing to apply)" in second
    assert postgres_dsn not in first + second
    assert "postgres (node " in first


def test_migrate_command_fails_cleanly_when_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from support.broker import free_port

    file = tmp_path / "gw.yaml"
    dsn = f"postgresql://u:Pa55word@127.0.0.1:{free_port()}/x"
    file.write_text(
        f"store: {{backend: postgres, dsn: '{dsn}'}}\n"
        "carriers: [{name: v, host: 127.0.0.1, port: 2775, system_id: s, password: p}]\n"
    )
    assert main(["migrate", "--config", str(file)]) == 1
    err = capsys.readouterr().err
    assert "cannot connect to PostgreSQL" in err and "Pa55word" not in err


def test_migrate_command_on_sqlite_creates_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "gw.yaml"
    file.write_text(
        f"store: {{path: {tmp_path / 'gw.db'}}}\n"
        "carriers: [{name: v, host: 127.0.0.1, port: 2775, system_id: s, password: p}]\n"
    )
    assert main(["migrate", "--config", str(file)]) == 0
    assert (tmp_path / "gw.db").exists()
    assert "schema version" in capsys.readouterr().out


async def test_dead_events_lists_the_shared_stores(
    tmp_path: Path, postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from smppgw.store import OutboxEvent
    from smppgw.store.pg import PostgresStore

    async with PostgresStore(postgres_dsn, node="gw-a") as store:
        (event_id,) = await store.add_events([OutboxEvent("x/#", b'{"status":"queued"}')])
        await store.set_aside([(event_id, "topic contains a wildcard '#'")])
    file = tmp_path / "gw.yaml"
    file.write_text(
        f"store: {{backend: postgres, dsn: '{postgres_dsn}'}}\n"
        "carriers: [{name: v, host: 127.0.0.1, port: 2775, system_id: s, password: p}]\n"
    )
    await asyncio.to_thread(main, ["dead-events", "--config", str(file), "--json"])
    out = capsys.readouterr().out
    assert '"topic": "x/#"' in out and "wildcard" in out
    assert postgres_dsn not in out
