"""``expect_reply`` and "text us": MO tied to its job or routed to its tenant, against a
real gateway, mosquitto, simulator and SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from smppgw.config import ConfigError
from smppgw.config.loader import parse_config
from smppgw.gateway import Gateway
from smppgw.sim.server import Simulator

from gateway.harness import Observer, gateway_config, running
from pipeline.test_cancel import REPLIES, publish_v5
from support.broker import Mosquitto

CUSTOMER = "84981234567"
SHORT_CODE = "8079"
TENANTS = [
    {"name": "shop", "numbers": [SHORT_CODE, "0281234567"]},
    {"name": "crm", "keywords": ["Hủy", "CRM"]},
]


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, mosquitto: Mosquitto, sim: Simulator, **top: Any
) -> AsyncIterator[tuple[Gateway, Observer]]:
    config = gateway_config(tmp_path, mosquitto, {"viettel": sim}, **top)
    async with running(config) as gw, Observer(mosquitto) as obs:
        await obs.client.subscribe("sms/reply/#")
        await obs.client.subscribe(REPLIES)
        yield gw, obs


def on(obs: Observer, topic: str) -> list[dict[str, Any]]:
    return obs.by_topic.get(topic, [])


def matched(gw: Gateway) -> float:
    value: float = gw.metrics.replies_matched._value.get()
    return value


async def mo(sim: Simulator, obs: Observer, text: str, topic: str, **kw: str) -> dict[str, Any]:
    """Inject an MO at the simulator; the event that reached ``topic`` for it."""
    before = len(on(obs, topic))
    await sim.send_mo(None, kw.get("source", CUSTOMER), kw.get("to", SHORT_CODE), text)
    await obs.wait_for(lambda: len(on(obs, topic)) > before)
    return on(obs, topic)[-1]


async def test_a_reply_is_tied_to_its_job_on_every_topic(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with gateway(tmp_path, mosquitto, viettel) as (gw, obs):
        job = {"id": "cod-1984", "to": "0981234567", "text": "Reply 1", "expect_reply": 600}
        publish_v5(mosquitto, "sms/submit", orjson.dumps(job), "order-1984")
        await obs.wait_final(["cod-1984"])
        event = await mo(viettel, obs, "1", "sms/inbound/viettel")
        assert event["in_reply_to"] == "cod-1984"
        assert event["from"] == CUSTOMER and event["to"] == SHORT_CODE and event["text"] == "1"
        await obs.wait_for(lambda: bool(on(obs, "sms/reply/cod-1984")))
        assert on(obs, "sms/reply/cod-1984") == [event]
        # The job's Response Topic got its status events and now the reply, each with
        # the job's Correlation Data.
        await obs.wait_for(lambda: any("in_reply_to" in e for e in on(obs, REPLIES)))
        assert on(obs, REPLIES)[-1] == event
        assert set(obs.correlation[REPLIES]) == {b"order-1984"}
        assert matched(gw) == 1
        # Another number's MO answers nothing.
        other = await mo(viettel, obs, "hi", "sms/inbound/viettel", source="84981111111")
        assert other["in_reply_to"] is None


async def test_the_newest_open_job_wins_and_a_closed_window_ties_nothing(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with gateway(tmp_path, mosquitto, viettel) as (gw, obs):
        await obs.submit(id="old", to="0981234567", text="a", expect_reply=600)
        await obs.wait_final(["old"])
        await obs.submit(id="new", to="+84981234567", text="b", expect_reply=600)
        await obs.submit(id="short", to="0981234568", text="c", expect_reply=1)
        await obs.wait_final(["new", "short"])
        event = await mo(viettel, obs, "2", "sms/inbound/viettel")
        assert event["in_reply_to"] == "new"
        await asyncio.sleep(1.2)  # "short"'s window closes
        late = await mo(viettel, obs, "ok", "sms/inbound/viettel", source="84981234568")
        assert late["in_reply_to"] is None
        assert matched(gw) == 1


async def test_reply_windows_survive_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with gateway(tmp_path, mosquitto, viettel) as (_, obs):
        await obs.submit(id="w-1", to="0981234567", text="a", expect_reply=600)
        await obs.wait_final(["w-1"])
    async with gateway(tmp_path, mosquitto, viettel) as (_, obs):
        event = await mo(viettel, obs, "1", "sms/inbound/viettel")
        assert event["in_reply_to"] == "w-1"


async def test_text_us_goes_to_the_tenant_of_the_number_or_keyword(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with gateway(tmp_path, mosquitto, viettel, tenants=TENANTS) as (_, obs):
        by_number = await mo(viettel, obs, "xin chao", "sms/inbound/shop/viettel")
        assert by_number["in_reply_to"] is None and by_number["text"] == "xin chao"
        long_number = await mo(viettel, obs, "hello", "sms/inbound/shop/viettel", to="84281234567")
        assert long_number["to"] == "84281234567"
        # A keyword in any case, with or without diacritics, as the first word.
        for text in ("HUY don 12", "hủy.", " crm please"):
            event = await mo(viettel, obs, text, "sms/inbound/crm/viettel", to="9999")
            assert event["text"] == text
        # A number beats a keyword; anything else: the default topic as before.
        assert (await mo(viettel, obs, "huy", "sms/inbound/shop/viettel"))["text"] == "huy"
        plain = await mo(viettel, obs, "who is this", "sms/inbound/viettel", to="9999")
        assert plain["in_reply_to"] is None


async def test_a_reply_to_a_tenants_job_goes_to_that_tenants_topics(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with gateway(tmp_path, mosquitto, viettel, tenants=TENANTS) as (_, obs):
        job = {"id": "o-7", "to": "0981234567", "text": "Reply 1", "expect_reply": 60}
        await obs.client.publish("sms/submit/crm", orjson.dumps(job))
        await obs.wait_for(lambda: any(e["status"] == "delivered" for e in obs.statuses("crm/o-7")))
        # Sent to shop's short code, but it answers crm's job: crm gets it.
        event = await mo(viettel, obs, "1", "sms/inbound/crm/viettel")
        assert event["in_reply_to"] == "o-7"
        await obs.wait_for(lambda: bool(on(obs, "sms/reply/crm/o-7")))
        assert on(obs, "sms/reply/crm/o-7") == [event]
        assert on(obs, "sms/inbound/shop/viettel") == []


def test_bad_numbers_and_keywords_and_duplicates_are_config_errors(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sims: dict[str, Any] = {}
    cases = [
        ([{"name": "a", "numbers": ["80x9"]}], "tenants[0].numbers[0]: must be a short code"),
        ([{"name": "a", "numbers": []}], "tenants[0].numbers: must be a non-empty list"),
        ([{"name": "a", "keywords": ["two words"]}], "tenants[0].keywords[0]: must be one word"),
        ([{"name": "a", "keywords": ["..."]}], "tenants[0].keywords[0]: has no letter or digit"),
        (
            [{"name": "a", "keywords": ["Hủy", "HUY"]}],
            "tenants[0].keywords[1]: duplicate keyword",
        ),
        (
            [{"name": "a", "numbers": ["0912345678"]}, {"name": "b", "numbers": ["+84912345678"]}],
            "tenants[1].numbers[0]: '84912345678' belongs to both a (tenants[0]) and b",
        ),
        (
            [{"name": "a", "keywords": ["shop"]}, {"name": "b", "keywords": ["SHỌP"]}],
            "tenants[1].keywords[0]: 'SHOP' belongs to both a (tenants[0]) and b",
        ),
    ]
    for tenants, problem in cases:
        with pytest.raises(ConfigError) as info:
            gateway_config(tmp_path, mosquitto, sims, tenants=tenants)
        assert problem in str(info.value), str(info.value)


def test_a_tenant_may_not_be_named_like_a_carrier() -> None:
    carrier = {"name": "viettel", "host": "h", "port": 1, "system_id": "x", "password": "p"}
    with pytest.raises(ConfigError, match=r"tenants\[0\].name: 'viettel' is also a carrier"):
        parse_config({"carriers": [carrier], "tenants": [{"name": "viettel"}]})
