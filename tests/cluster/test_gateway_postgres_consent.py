"""Issue 14 through a whole gateway on ``store.backend: postgres`` (real mosquitto,
simulator, PostgreSQL): a ``send_at`` job held then sent, a reply tied to its job, an
opt-out by MO refusing the next marketing job, and the daily cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smppgw.sim.server import Simulator

from gateway.harness import Observer, gateway_config, running, sim_config
from support.broker import Mosquitto

CUSTOMER = "84981234567"


@pytest.fixture
async def viettel() -> AsyncIterator[Simulator]:
    async with Simulator(sim_config(receipt_delay=0.05, name="viettel")) as sim:
        yield sim


def final(obs: Observer, job_id: str) -> dict[str, Any]:
    (event,) = obs.final(job_id)
    return event


async def test_held_jobs_replies_and_consent_on_a_postgres_store(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, postgres_dsn: str
) -> None:
    config = gateway_config(
        tmp_path,
        mosquitto,
        {"viettel": viettel},
        store={"backend": "postgres", "dsn": postgres_dsn},
        cluster={"node_id": "gw-a"},
        consent={"marketing_hours": "00:00-24:00", "optout_reply": "Da huy."},
    )
    async with running(config) as gw, Observer(mosquitto) as obs:
        await obs.client.subscribe("sms/consent")
        # send_at: held (state held, scheduled event), then released and sent.
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        await obs.submit(id="later", to="0981234567", text="reminder", send_at=due.isoformat())
        await obs.wait_for(lambda: bool(obs.statuses("later")))
        view = await gw.store.job("later")
        assert view is not None and view.state == "held"
        assert viettel.submits == []
        await obs.wait_final(["later"], timeout=10)
        assert [e["status"] for e in obs.statuses("later")] == [
            "scheduled",
            "submitted",
            "delivered",
        ]
        # expect_reply: the customer's MO is tied to the job.
        await obs.submit(id="ask", to="0981234567", text="Reply 1 to confirm", expect_reply=600)
        await obs.wait_final(["ask"])
        await viettel.send_mo(None, CUSTOMER, "8079", "1")
        inbound = "sms/inbound/viettel"
        await obs.wait_for(lambda: bool(obs.by_topic.get(inbound)))
        assert obs.by_topic[inbound][0]["in_reply_to"] == "ask"
        # The cap (3 a day): the 4th marketing job to one number is refused.
        ids = [f"m{i}" for i in range(4)]
        for job_id in ids:
            await obs.submit(id=job_id, to="0981234567", text="Sale", category="marketing")
            await obs.wait_final([job_id])
        assert [final(obs, i)["status"] for i in ids] == ["delivered"] * 3 + ["rejected"]
        assert final(obs, "m3")["error"]["code"] == "frequency_cap"
        # An opt-out by MO: recorded, confirmed, and the next marketing job refused.
        await viettel.send_mo(None, "84981111111", "8079", "HUY")
        await obs.wait_for(lambda: bool(obs.by_topic.get("sms/consent")))
        await obs.submit(id="m-out", to="0981111111", text="Sale", category="marketing")
        await obs.wait_final(["m-out"])
        assert final(obs, "m-out")["error"]["code"] == "opted_out"
        assert await gw.store.consent_counts() == {("opt_out", "mo"): 1}
        await asyncio.sleep(0)
