"""Failover and ported numbers on ``store.backend: postgres``: the whole gateway against
two simulated SMSCs, one PostgreSQL shared by two gateways (in-process, real mosquitto).

A number refused by viettel and delivered by vinaphone through gw-a is learned in the
shared ``ported`` table; gw-b (another node on the same database) sends the next job to
that number to vinaphone first, without a refusal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from smppgw.config import Config, StoreBackend
from smppgw.config.loader import parse_config
from smppgw.sim.server import Simulator
from smppgw.smpp.constants import Status

from gateway.harness import Observer, sim_config
from gateway.test_failover import PORTED, REFUSED, gateway, raw_config, to
from support.broker import Mosquitto


@pytest.fixture
async def viettel() -> AsyncIterator[Simulator]:
    config = sim_config(
        name="viettel", receipt_delay=0.05, reject_dest={"8498111": Status.ESME_RINVDSTADR}
    )
    async with Simulator(config) as sim:
        yield sim


@pytest.fixture
async def vinaphone() -> AsyncIterator[Simulator]:
    async with Simulator(sim_config(name="vinaphone", receipt_delay=0.05)) as sim:
        yield sim


async def test_a_port_learned_through_one_gateway_routes_the_next_job_on_another(
    tmp_path: Path,
    mosquitto: Mosquitto,
    viettel: Simulator,
    vinaphone: Simulator,
    postgres_dsn: str,
) -> None:
    def node(name: str) -> Config:
        raw = raw_config(tmp_path, mosquitto, viettel, vinaphone)
        raw["store"] = {"backend": "postgres", "dsn": postgres_dsn}
        raw["cluster"] = {"node_id": name}
        raw["mqtt"] = {**raw["mqtt"], "client_id": name}
        return parse_config(raw)

    gw_a, gw_b = node("gw-a"), node("gw-b")
    assert gw_a.store.backend is StoreBackend.POSTGRES
    async with gateway(gw_a), Observer(mosquitto) as obs:
        await obs.submit(id="port-1", to="0981110000", text="OTP 1111")
        await obs.wait_final(["port-1"])
    first = obs.statuses("port-1")
    assert [(e["status"], e["carrier"]) for e in first] == [
        ("submitted", "vinaphone"),
        ("delivered", "vinaphone"),
    ]
    assert all(e["attempts"] == [REFUSED] for e in first)
    assert viettel.stats()["submits_rejected"] == 1

    async with gateway(gw_b), Observer(mosquitto) as obs:
        await obs.submit(id="port-2", to="0981110000", text="OTP 2222")
        await obs.wait_final(["port-2"])
    assert [(e["status"], e["carrier"], e["attempts"]) for e in obs.statuses("port-2")] == [
        ("submitted", "vinaphone", []),
        ("delivered", "vinaphone", []),
    ]
    assert viettel.stats()["submits_rejected"] == 1  # gw-b never tried viettel
    assert len(to(vinaphone, PORTED)) == 2 and not to(viettel, PORTED)
    conn = await asyncpg.connect(postgres_dsn)
    try:
        row = await conn.fetchrow("SELECT carrier, source FROM ported WHERE number = $1", PORTED)
        assert tuple(row) == ("vinaphone", "learned")
        jobs = await conn.fetch("SELECT job_id, chain FROM jobs ORDER BY job_id")
        assert [j["job_id"] for j in jobs] == ["port-1", "port-2"]
    finally:
        await conn.close()
