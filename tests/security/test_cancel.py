"""Cancels under the shipped broker ACL: a tenant cancels only its own jobs.

``conf/mosquitto.acl`` grants each tenant account write on ``sms/cancel/<its name>`` only,
and the gateway's account read on ``sms/cancel/#``; the gateway takes the tenant from the
topic level, so no tenant can cancel another's job, whatever id it names.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from security.test_tenants import Account, broker, job, metric, sims, two_tenants
from smppgw.gateway import Gateway
from smppgw.mqtt import MqttError
from smppgw.sim.server import Simulator

from support.broker import Mosquitto

__all__ = ["broker", "sims"]  # the fixtures this module uses


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (bounded: 10 s) until ``await check()`` holds."""
    deadline = time.monotonic() + 10
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _now(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def awaited() -> bool:
        return check()

    return awaited


def cancels(gateway: Gateway, result: str) -> float:
    return metric(gateway, "smppgw_cancels_total", result=result)


async def queued(gateway: Gateway, key: str) -> bool:
    view = await gateway.store.job(key)
    return view is not None and view.state == "queued"


async def test_a_tenant_cancels_its_own_job_and_cannot_reach_anothers(
    tmp_path: Path, broker: Mosquitto, sims: dict[str, Simulator]
) -> None:
    tenants = [{"name": "shop"}, {"name": "shop2"}]
    async with two_tenants(tmp_path, broker, sims, tenants) as (gateway, shop, shop2):
        await until(_now(lambda: gateway.mqtt.subscribed("sms/cancel/+")), "the subscription")
        gateway.set_paused("viettel", True)
        await shop2.submit("sms/submit/shop2", **job("x-1"))
        await until(lambda: queued(gateway, "shop2/x-1"), "the job queued")
        # No grant on another tenant's cancel topic: the broker refuses it.
        async with Account(broker, "shop", "-cancel") as thief:
            with contextlib.suppress(MqttError):
                await thief.client.publish("sms/cancel/shop2", orjson.dumps({"id": "x-1"}))
        # Its own topic is allowed, and names only its own jobs.
        await shop.client.publish("sms/cancel/shop", orjson.dumps({"id": "x-1"}), timeout=60)
        await until(_now(lambda: cancels(gateway, "not_cancelled") == 1), "shop's cancel")
        assert await queued(gateway, "shop2/x-1"), "shop's cancel did not reach shop2's job"
        await shop2.client.publish("sms/cancel/shop2", orjson.dumps({"id": "x-1"}), timeout=60)
        await shop2.wait_for(lambda: bool(shop2.events.get("sms/status/shop2/x-1")))
    assert [e["status"] for e in shop2.events["sms/status/shop2/x-1"]] == ["cancelled"]
    assert (cancels(gateway, "cancelled"), cancels(gateway, "not_cancelled")) == (1, 1)
    assert not any(s.pdu for sim in sims.values() for s in sim.submits)
