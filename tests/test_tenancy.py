"""Tenants in isolation: topic → tenant, the policy checks, admission under max_queued."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from smppgw.config import parse_config
from smppgw.jobs import Job, decode_job
from smppgw.metrics import Metrics
from smppgw.settings import CarrierConfig
from smppgw.tenancy import DEFAULT, TenantClosed, Tenants, UnknownTenant, parts_of

CARRIER = {"name": "viettel", "host": "h", "port": 1, "system_id": "s", "password": "p"}


def tenants(*entries: dict[str, object]) -> Tenants:
    config = parse_config({"carriers": [CARRIER], "tenants": list(entries)})
    return Tenants(config, Metrics(process_metrics=False))


def job(**fields: object) -> Job:
    return decode_job(orjson.dumps({"id": "j-1", "to": "0912345678", "text": "hi", **fields}))


def test_topics_name_the_tenant_and_plain_submit_is_the_default() -> None:
    t = tenants({"name": "shop"})
    assert t.resolve("sms/submit") is None, "default tenant, unrestricted"
    shop = t.resolve("sms/submit/shop")
    assert shop is not None and shop.key("order-1984") == "shop/order-1984"
    for topic in ("sms/submit/shop2", "sms/submit/default", "sms/submitx"):
        with pytest.raises(UnknownTenant):
            t.resolve(topic)
    assert t.named("sms/submit/shop") == "shop"
    assert t.named("sms/submit/other") is None and t.named("sms/submit") is None
    ruled = tenants({"name": DEFAULT, "priorities": ["low"]}).resolve("sms/submit")
    assert ruled is not None and ruled.key("x") == "x", "default keeps plain ids"


def test_senders_compare_as_the_address_sent() -> None:
    t = tenants({"name": "shop", "senders": ["SHOPVN", "0912345678"]})
    shop = t.resolve("sms/submit/shop")
    assert shop is not None
    for allowed in ("SHOPVN", "+84912345678", "84 912 345 678", None):
        assert t.refusal(shop, job(**({"from": allowed} if allowed else {})), "84") is None
    refused = t.refusal(shop, job(**{"from": "ShopVN"}), "84")
    assert refused is not None and refused[0] == "sender_not_allowed"


def test_parts_follow_the_carrier_coding() -> None:
    carrier = CarrierConfig(name="c", host="h", port=1, system_id="s")
    assert parts_of("hi", carrier) == 1
    assert parts_of("a" * 161, carrier) == 2
    assert parts_of("ă" * 71, carrier) == 2  # UCS2: 70 per single SMS
    assert parts_of("a" * 2000, carrier) == 0  # over max_parts: never sent, never billed


async def test_max_queued_admits_in_order_and_a_cancelled_waiter_frees_nothing() -> None:
    t = tenants({"name": "shop", "max_queued": 2})
    shop = t.resolve("sms/submit/shop")
    assert shop is not None
    await t.admit(shop)
    t.settled(shop, True)  # waiting 1
    await t.admit(shop)  # admitted 1: full
    first = asyncio.ensure_future(t.admit(shop))
    second = asyncio.ensure_future(t.admit(shop))
    third = asyncio.ensure_future(t.admit(shop))
    await asyncio.sleep(0)
    assert not (first.done() or second.done() or third.done())
    second.cancel()
    t.settled(shop, False)  # the admitted one was a duplicate: room for one
    await asyncio.sleep(0)
    assert first.done() and not third.done()
    t.left("shop/j-0")  # the waiting job was submitted: room for the next
    await asyncio.sleep(0)
    assert third.done()
    assert (shop.waiting, shop.admitted) == (0, 2)
    t.close()
    with pytest.raises(TenantClosed):
        await t.admit(shop)
