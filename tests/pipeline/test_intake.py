"""Intake on its own: MQTT message → validated, routed job (or rejection) committed to a
real SQLite store before the handler returns, counted through the telemetry layer."""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from smppgw.config import Config
from smppgw.config.loader import parse_config
from smppgw.mqtt import Message
from smppgw.ops.metrics import Metrics
from smppgw.ops.telemetry import Telemetry
from smppgw.pipeline.intake import Intake
from smppgw.pipeline.outcomes import EventFactory
from smppgw.pipeline.routing import Router
from smppgw.pipeline.tenancy import Tenants
from smppgw.store import Store

CARRIER = {
    "name": "viettel",
    "host": "h",
    "port": 1,
    "system_id": "s",
    "password": "p",
    "prefixes": ["8498"],
}


class Bench:
    """An Intake over a real store; records its wake-ups."""

    def __init__(self, config: Config, store: Store) -> None:
        self.store = store
        self.metrics = Metrics(process_metrics=False)
        self.jobs_for: list[str] = []
        self.events_woken = 0
        self.intake = Intake(
            config,
            store,
            Router(config.carriers, config.routing),
            EventFactory(config.mqtt),
            Telemetry(self.metrics),
            Tenants(config, self.metrics),
            on_job=self.jobs_for.append,
            on_events=self._woken,
        )

    def _woken(self) -> None:
        self.events_woken += 1

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def handle(self, body: Any, topic: str = "sms/submit", **props: Any) -> None:
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        await self.intake.handle(
            Message(
                topic=topic,
                payload=payload,
                qos=1,
                response_topic=props.get("response_topic"),
                correlation_data=props.get("correlation_data"),
                retain=False,
            )
        )

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(e.topic, orjson.loads(e.payload)) for e in await self.store.pending_events(100)]


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    config = parse_config({"carriers": [CARRIER], "tenants": [{"name": "shop"}]})
    async with Store(str(tmp_path / "gw.db")) as store:
        yield Bench(config, store)


def job(job_id: str = "j1", **fields: Any) -> dict[str, Any]:
    return {"id": job_id, "to": "0981234567", "text": "hi", **fields}


async def test_a_valid_job_is_committed_routed_and_counted_before_the_handler_returns(
    bench: Bench,
) -> None:
    nfd = unicodedata.normalize("NFD", "Việt")
    await bench.handle(
        job(text=nfd, priority="high"), response_topic="app/r", correlation_data=b"c"
    )
    (claimed,) = await bench.store.claim("viettel", 10, time.time())
    assert (claimed.job_id, claimed.destination, claimed.lane) == ("j1", "84981234567", 0)
    assert claimed.text == unicodedata.normalize("NFC", "Việt")
    assert (claimed.response_topic, claimed.correlation_data) == ("app/r", b"c")
    assert bench.jobs_for == ["viettel"]
    assert bench.sample("smppgw_jobs_received_total", lane="high") == 1
    assert await bench.events() == []  # nothing to say until the carrier reports


async def test_a_duplicate_id_is_acknowledged_and_not_queued_again(bench: Bench) -> None:
    await bench.handle(job())
    await bench.handle(job(text="other"))
    assert len(await bench.store.claim("viettel", 10, time.time())) == 1
    assert bench.sample("smppgw_jobs_duplicate_total") == 1
    assert bench.jobs_for == ["viettel"]


async def test_jobs_of_one_turn_share_one_store_operation(bench: Bench) -> None:
    """Handlers running in the same event-loop turn go to the store as one add_jobs."""
    before = bench.store.stats().operations
    await asyncio.gather(*(bench.handle(job(f"b{i}")) for i in range(20)))
    assert bench.store.stats().operations - before == 1
    assert bench.sample("smppgw_jobs_received_total", lane="normal") == 20


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (job(text=""), "invalid", "text: must not be empty"),
        (job(to="0911111111"), "no_route", "to: "),
        (job(carrier="nobody"), "unknown_carrier", "to: "),
    ],
)
async def test_a_refused_job_gets_a_rejected_event_and_a_counted_reason(
    bench: Bench, body: dict[str, Any], code: str, reason: str
) -> None:
    await bench.handle(body, response_topic="app/r")
    events = await bench.events()
    assert [topic for topic, _ in events] == ["sms/status/j1", "app/r"]
    payload = events[0][1]
    assert payload["status"] == "rejected" and payload["error"]["code"] == code
    assert payload["error"]["reason"].startswith(reason)
    assert bench.sample("smppgw_jobs_rejected_total", reason=code) == 1
    assert bench.sample("smppgw_tenant_jobs_rejected_total", tenant="default", reason=code) == 1
    assert bench.events_woken == 1
    assert await bench.store.claim("viettel", 10, time.time()) == []


async def test_garbage_goes_to_the_rejected_topic_and_is_counted(bench: Bench) -> None:
    await bench.handle(b"\xffnot json")
    ((topic, payload),) = await bench.events()
    assert topic == "sms/rejected"
    assert payload["size"] == 9
    assert bench.sample("smppgw_garbage_payloads_total") == 1


async def test_a_tenants_job_is_keyed_and_counted_under_its_tenant(bench: Bench) -> None:
    await bench.handle(job(), topic="sms/submit/shop")
    (claimed,) = await bench.store.claim("viettel", 10, time.time())
    assert claimed.job_id == "shop/j1"
    assert bench.sample("smppgw_tenant_jobs_received_total", tenant="shop") == 1
    assert bench.sample("smppgw_tenant_parts_total", tenant="shop") == 1


async def test_an_unknown_tenant_is_answered_on_the_rejected_topic(bench: Bench) -> None:
    await bench.handle(job(), topic="sms/submit/nobody")
    ((topic, payload),) = await bench.events()
    assert topic == "sms/rejected" and "nobody" in payload["reason"]
    assert bench.sample("smppgw_tenant_unknown_total") == 1
    assert await bench.store.claim("viettel", 10, time.time()) == []
