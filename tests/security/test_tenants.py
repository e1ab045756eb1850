"""Finding 3, "one id namespace for everyone": tenants, with the broker's ACLs on.

A real mosquitto runs with authentication and the shipped ``conf/mosquitto.acl``: the
gateway's account, two tenant accounts (``shop``, ``shop2``), an ``intruder`` with no
grant of its own and an ``ops`` account that may read everything (the test's observer).
The gateway runs in-process against real simulators over loopback TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from smppgw.config import Config, MqttConfig, Secret
from smppgw.config.loader import load_config, parse_config
from smppgw.gateway import Gateway
from smppgw.mqtt import Message, MqttClient, MqttError
from smppgw.pipeline.tenancy import local_day
from smppgw.sim.config import Faults
from smppgw.sim.server import Simulator

from gateway.harness import FINAL, running, sim_config, wait_until
from support.broker import Mosquitto, find_mosquitto

ACL = (Path(__file__).parents[2] / "conf" / "mosquitto.acl").read_text()
USERS = {
    "smppgw": "gw-pass",
    "shop": "shop-pass",
    "shop2": "shop2-pass",
    "intruder": "intruder-pass",
    "ops": "ops-pass",
}
#: The observer: reads every topic (appended to the shipped ACL, for the test only).
OPS = "\nuser ops\ntopic read sms/#\n"

VIETTEL = "0981234567"  # 8498… → viettel
VINAPHONE = "0911234567"  # 8491… → vinaphone


@pytest.fixture
def broker(tmp_path: Path) -> Iterable[Mosquitto]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    with Mosquitto(directory=directory, users=USERS, acl=ACL + OPS) as b:
        yield b


@pytest.fixture
async def sims() -> AsyncIterator[dict[str, Simulator]]:
    async with (
        Simulator(sim_config(receipt_delay=0.05, name="viettel")) as viettel,
        Simulator(sim_config(receipt_delay=0.05, name="vinaphone")) as vinaphone,
    ):
        yield {"viettel": viettel, "vinaphone": vinaphone}


def config(
    tmp_path: Path,
    broker: Mosquitto,
    sims: dict[str, Simulator],
    tenants: list[dict[str, Any]],
    **carrier: Any,
) -> Config:
    return parse_config(config_doc(tmp_path, broker, sims, tenants, **carrier))


def config_doc(
    tmp_path: Path,
    broker: Mosquitto,
    sims: dict[str, Simulator],
    tenants: list[dict[str, Any]],
    **carrier: Any,
) -> dict[str, Any]:
    # vinaphone also claims the wider 849: a forced vinaphone job to a viettel (8498)
    # number is then allowed, the longest prefix still routes it to viettel otherwise.
    prefixes = {"viettel": ["8498"], "vinaphone": ["8491", "849"]}
    return dict(
        {
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "client_id": "gw-tenants",
                "username": "smppgw",
                "password": USERS["smppgw"],
            },
            "store": {"path": str(tmp_path / "gw.db")},
            "metrics": {"listen": None},
            "log": {"level": "warning", "format": "console"},
            "carriers": [
                {
                    "name": name,
                    "host": "127.0.0.1",
                    "port": sim.port,
                    "system_id": sim.config.accounts[0].system_id,
                    "password": sim.config.accounts[0].password,
                    "tps": 500,
                    "window": 50,
                    "source": {"address": "GW"},
                    "prefixes": prefixes[name],
                    "reconnect_min": 0.05,
                    "reconnect_max": 0.5,
                    **carrier,
                }
                for name, sim in sims.items()
            ],
            "tenants": tenants,
        }
    )


class Account:
    """One broker account: publishes jobs and records what it may read."""

    def __init__(self, broker: Mosquitto, user: str, session: str = "") -> None:
        self.user = user
        self.client = MqttClient(
            MqttConfig(
                host=broker.host,
                port=broker.port,
                client_id=f"test-{user}{session}",
                username=user,
                password=Secret(USERS[user]),
            ),
            on_message=self._record,
        )
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Account:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(None, None, None)

    async def _record(self, message: Message) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            self.events[message.topic].append(orjson.loads(message.payload))
        self._changed.set()

    async def submit(self, topic: str, **job: Any) -> None:
        if "from_" in job:
            job["from"] = job.pop("from_")
        await self.client.publish(topic, orjson.dumps(job), timeout=60)

    def final(self, topic: str) -> list[dict[str, Any]]:
        return [e for e in self.events.get(topic, []) if e.get("status") in FINAL]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        await wait_until(self._changed, predicate, timeout, f"{self.user}'s events")


@contextlib.asynccontextmanager
async def two_tenants(
    tmp_path: Path,
    broker: Mosquitto,
    sims: dict[str, Simulator],
    tenants: list[dict[str, Any]],
    **carrier: Any,
) -> AsyncIterator[tuple[Gateway, Account, Account]]:
    """The gateway with ``tenants``, and the shop and shop2 accounts each reading its own
    status events."""
    async with (
        running(config(tmp_path, broker, sims, tenants, **carrier)) as gateway,
        Account(broker, "shop") as shop,
        Account(broker, "shop2") as shop2,
    ):
        await shop.client.subscribe("sms/status/shop/#")
        await shop2.client.subscribe("sms/status/shop2/#")
        await subscribed(gateway)
        yield gateway, shop, shop2


def job(job_id: str, to: str = VIETTEL, **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "to": to, "text": f"job {job_id}", **extra}


async def subscribed(gateway: Gateway) -> None:
    """Until the gateway's subscriptions exist: a job published before is nobody's."""
    deadline = time.monotonic() + 10
    clients = [(gateway.mqtt, "sms/submit/+")]
    clients += [(c, f"sms/submit/{name}") for name, c in gateway.tenant_mqtt.items()]
    while not all(client.subscribed(topic) for client, topic in clients):
        assert time.monotonic() < deadline, "the gateway did not subscribe"
        await asyncio.sleep(0.01)


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    value = gateway.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_intruder_cannot_submit_and_unknown_tenant_is_rejected(
    tmp_path: Path, broker: Mosquitto, sims: dict[str, Simulator]
) -> None:
    tenants = [{"name": "shop"}, {"name": "shop2"}]
    async with (
        running(config(tmp_path, broker, sims, tenants)) as gateway,
        Account(broker, "ops") as ops,
        Account(broker, "shop") as shop,
        Account(broker, "intruder", "-read") as spy,
    ):
        await ops.client.subscribe("sms/status/#")
        await ops.client.subscribe("sms/rejected")
        await spy.client.subscribe("sms/#")  # granted, but the ACL delivers it nothing
        await subscribed(gateway)
        # No grant for these: the broker refuses them (PUBACK 0x87 "not authorized"; the
        # connection may drop too) and the gateway never sees them. A fresh session each,
        # so nothing is replayed.
        for n, topic in enumerate(("sms/submit", "sms/submit/shop", "sms/submit/shop2")):
            async with Account(broker, "intruder", f"-{n}") as intruder:
                with contextlib.suppress(MqttError):
                    await intruder.submit(topic, **job(f"steal-{n}", text=f"intruder {n}"))
        # Its own topic level is allowed by the pattern, but names no tenant.
        await spy.submit("sms/submit/intruder", **job("steal-3", text="intruder 3"))
        await shop.submit("sms/submit/shop", **job("order-1984", text="for the shop"))
        await ops.wait_for(lambda: bool(ops.final("sms/status/shop/order-1984")))
        await ops.wait_for(lambda: bool(ops.events["sms/rejected"]))

    texts = [s.pdu.short_message for sim in sims.values() for s in sim.submits]
    assert texts == [b"for the shop"], "only the tenant's job reached an SMSC"
    assert ops.final("sms/status/shop/order-1984")[0]["status"] == "delivered"
    [rejected] = ops.events["sms/rejected"]
    assert rejected["reason"].startswith("unknown_tenant")
    assert "'intruder'" in rejected["reason"]
    assert metric(gateway, "smppgw_tenant_unknown_total") == 1
    assert not any("steal" in topic for topic in ops.events), "no status for intruder ids"
    assert not spy.events, "the intruder reads no tenant's events"


async def test_two_tenants_same_id_both_sent_each_sees_only_its_own(
    tmp_path: Path, broker: Mosquitto, sims: dict[str, Simulator]
) -> None:
    tenants = [{"name": "shop"}, {"name": "shop2"}]
    async with two_tenants(tmp_path, broker, sims, tenants) as (_gateway, shop, shop2):
        await shop2.submit("sms/submit/shop2", **job("order-1984", text="shop2 order"))
        await shop.submit("sms/submit/shop", **job("order-1984", text="shop order"))
        await shop.wait_for(lambda: bool(shop.final("sms/status/shop/order-1984")))
        await shop2.wait_for(lambda: bool(shop2.final("sms/status/shop2/order-1984")))

    texts = sorted(s.pdu.short_message for s in sims["viettel"].submits)
    assert texts == [b"shop order", b"shop2 order"], "both tenants' order-1984 went out"
    for account in (shop, shop2):
        topic = f"sms/status/{account.user}/order-1984"
        [final] = account.final(topic)
        assert final["status"] == "delivered"
        assert final["id"] == "order-1984", "the payload carries the client's own id"
        assert set(account.events) == {topic}, "a tenant reads only its own status topics"


async def test_tenant_limited_senders_priorities_and_carrier(
    tmp_path: Path, broker: Mosquitto, sims: dict[str, Simulator]
) -> None:
    tenants = [
        {
            "name": "shop",
            "senders": ["SHOPVN", "8079"],
            "priorities": ["normal", "low"],
            "force_carrier": False,
        },
        {"name": "shop2", "force_carrier": True},
    ]
    async with two_tenants(tmp_path, broker, sims, tenants) as (gateway, shop, shop2):
        await shop.submit("sms/submit/shop", **job("spoof", from_="Vietcombank"))
        await shop.submit("sms/submit/shop", **job("vip", priority="high"))
        await shop.submit("sms/submit/shop", **job("forced", carrier="vinaphone"))
        await shop.submit("sms/submit/shop", **job("ok", from_="8079", priority="low"))
        await shop2.submit("sms/submit/shop2", **job("forced", carrier="vinaphone"))
        ids = ("spoof", "vip", "forced", "ok")
        await shop.wait_for(lambda: all(shop.final(f"sms/status/shop/{i}") for i in ids))
        await shop2.wait_for(lambda: bool(shop2.final("sms/status/shop2/forced")))

    def error(job_id: str) -> dict[str, Any]:
        [final] = shop.final(f"sms/status/shop/{job_id}")
        assert final["status"] == "rejected"
        return dict(final["error"])

    assert error("spoof")["code"] == "sender_not_allowed"
    assert "SHOPVN, 8079" in error("spoof")["reason"]
    assert error("vip")["code"] == "priority_not_allowed"
    assert error("forced") == {
        "code": "invalid",
        "reason": "carrier: tenant shop may not choose the carrier",
    }
    assert shop.final("sms/status/shop/ok")[0]["status"] == "delivered"
    assert shop2.final("sms/status/shop2/forced")[0]["carrier"] == "vinaphone"
    sent = [s.pdu for sim in sims.values() for s in sim.submits]
    assert sorted((p.source_addr, p.short_message) for p in sent) == [
        ("8079", b"job ok"),
        ("GW", b"job forced"),
    ]
    for code in ("sender_not_allowed", "priority_not_allowed", "invalid"):
        assert metric(gateway, "smppgw_tenant_jobs_rejected_total", tenant="shop", reason=code)


async def test_rate_paces_one_tenant_and_not_the_other(
    tmp_path: Path, broker: Mosquitto, sims: dict[str, Simulator]
) -> None:
    """The broker acknowledges publishers itself; the gateway's PUBACKs to the broker are
    what ``rate`` paces, so the pace shows in when the jobs are taken in (their
    ``submitted`` events), while the broker holds the rest for the gateway's session."""
    tenants = [{"name": "shop", "rate": 20}, {"name": "shop2"}]
    count = 40
    async with two_tenants(tmp_path, broker, sims, tenants) as (_gateway, shop, shop2):
        start = time.monotonic()
        await asyncio.gather(
            *(shop.submit("sms/submit/shop", **job(f"s-{i}", dlr=False)) for i in range(count)),
            *(shop2.submit("sms/submit/shop2", **job(f"t-{i}", dlr=False)) for i in range(count)),
        )
        shop_ids = [f"sms/status/shop/s-{i}" for i in range(count)]
        other_ids = [f"sms/status/shop2/t-{i}" for i in range(count)]
        await shop2.wait_for(lambda: all(t in shop2.events for t in other_ids))
        other = time.monotonic() - start
        shop_done_meanwhile = sum(1 for t in shop_ids if t in shop.events)
        await shop.wait_for(lambda: all(t in shop.events for t in shop_ids))
        paced = time.monotonic() - start

    print(
        f"\n{count} jobs each: shop (rate 20/s) all taken in after {paced:.2f} s; "
        f"shop2 (no rate) after {other:.2f} s, when shop had {shop_done_meanwhile}"
    )
    assert paced >= 1.8, "40 jobs at 20/s need about 2 s"
    assert other < 1.0, "the other tenant is not slowed"
    assert shop_done_meanwhile < count
    assert len(sims["viettel"].submits) == 2 * count


async def test_daily_parts_quota(
    tmp_path: Path, broker: Mosquitto, sims: dict[str, Simulator]
) -> None:
    tenants = [{"name": "shop", "daily_parts": 3}]
    long_text = "Order 1984 shipped. " * 10  # 200 GSM characters: 2 parts
    async with (
        running(config(tmp_path, broker, sims, tenants)) as gateway,
        Account(broker, "shop") as shop,
    ):
        await shop.client.subscribe("sms/status/shop/#")
        await subscribed(gateway)
        await shop.submit("sms/submit/shop", **job("one"))
        await shop.submit("sms/submit/shop", **job("two", text=long_text))
        await shop.submit("sms/submit/shop", **job("one"))  # again: a duplicate, not billed
        await shop.submit("sms/submit/shop", **job("three"))
        ids = ("one", "two", "three")
        await shop.wait_for(lambda: all(shop.final(f"sms/status/shop/{i}") for i in ids))
        used = await gateway.store.tenant_usage("shop", local_day(time.time()))

    assert shop.final("sms/status/shop/one")[0]["status"] == "delivered"
    assert shop.final("sms/status/shop/two")[0]["parts"] == 2
    [three] = shop.final("sms/status/shop/three")
    assert (three["status"], three["error"]["code"]) == ("rejected", "quota_exceeded")
    assert "daily_parts 3" in three["error"]["reason"]
    assert used == 3
    assert len(sims["viettel"].submits) == 3


@pytest.fixture
async def slow_sims() -> AsyncIterator[dict[str, Simulator]]:
    """viettel answers every submit_sm after 0.4 s; vinaphone at once."""
    slow = sim_config(receipt_delay=0.05, name="viettel", faults=Faults(response_delay=0.4))
    async with (
        Simulator(slow) as viettel,
        Simulator(sim_config(receipt_delay=0.05, name="vinaphone")) as vinaphone,
    ):
        yield {"viettel": viettel, "vinaphone": vinaphone}


async def test_max_queued_pauses_one_tenant_while_the_other_flows(
    tmp_path: Path, broker: Mosquitto, slow_sims: dict[str, Simulator]
) -> None:
    tenants = [{"name": "shop", "max_queued": 3}, {"name": "shop2"}]
    count = 8
    async with two_tenants(tmp_path, broker, slow_sims, tenants, window=1) as (
        gateway,
        shop,
        shop2,
    ):
        await asyncio.gather(
            *(shop.submit("sms/submit/shop", **job(f"s-{i}")) for i in range(count))
        )
        await asyncio.sleep(0.1)
        await asyncio.gather(
            *(shop2.submit("sms/submit/shop2", **job(f"t-{i}", to=VINAPHONE)) for i in range(count))
        )
        other_ids = [f"sms/status/shop2/t-{i}" for i in range(count)]
        await shop2.wait_for(lambda: all(shop2.final(t) for t in other_ids))
        taken = metric(gateway, "smppgw_tenant_jobs_received_total", tenant="shop")
        held = metric(gateway, "smppgw_tenant_held", tenant="shop")
        shop_ids = [f"sms/status/shop/s-{i}" for i in range(count)]
        await shop.wait_for(lambda: all(shop.final(t) for t in shop_ids), timeout=30)

    print(f"\nshop2 all delivered while shop had {taken:g} of {count} taken in, {held:g} held")
    assert taken <= 4, "at most max_queued (plus one already submitted) taken in"
    assert held >= count - 4
    assert all(shop.final(t)[0]["status"] == "delivered" for t in shop_ids)


async def test_reload_applies_tenant_limits_live_and_leaves_the_tenant_list(
    tmp_path: Path, broker: Mosquitto, sims: dict[str, Simulator]
) -> None:
    doc = config_doc(tmp_path, broker, sims, [{"name": "shop", "daily_parts": 1}])
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(doc))
    gateway = Gateway(load_config(path), config_path=str(path))
    task = asyncio.create_task(gateway.run(install_signals=False))
    try:
        await asyncio.wait_for(gateway.started.wait(), 15)
        await subscribed(gateway)
        async with Account(broker, "shop") as shop:
            await shop.client.subscribe("sms/status/shop/#")
            await shop.submit("sms/submit/shop", **job("a"))
            await shop.submit("sms/submit/shop", **job("b"))
            await shop.wait_for(lambda: bool(shop.final("sms/status/shop/b")))
            doc["tenants"] = [
                {"name": "shop", "daily_parts": 5, "senders": ["SHOPVN"]},
                {"name": "shop2"},
            ]
            path.write_text(yaml.safe_dump(doc))
            assert await gateway.reload()
            await shop.submit("sms/submit/shop", **job("c", from_="SHOPVN"))
            await shop.submit("sms/submit/shop", **job("d", from_="OTHER"))
            ids = ("a", "c", "d")
            await shop.wait_for(lambda: all(shop.final(f"sms/status/shop/{i}") for i in ids))
        assert list(gateway.tenant_mqtt) == ["shop"], "a tenant added on reload waits for a restart"
    finally:
        gateway.stop()
        await asyncio.wait_for(task, 30)

    def code(job_id: str) -> str | None:
        error = shop.final(f"sms/status/shop/{job_id}")[0]["error"]
        return None if error is None else str(error["code"])

    assert [code(i) for i in "abcd"] == [None, "quota_exceeded", None, "sender_not_allowed"]


async def test_jobs_held_at_shutdown_are_taken_by_the_next_run_once(
    tmp_path: Path, broker: Mosquitto, sims: dict[str, Simulator]
) -> None:
    """A held job has no PUBACK: stopping the gateway leaves it with the broker, and the
    next run takes it; nothing is lost or sent twice."""
    count = 10
    async with Account(broker, "shop") as shop:
        await shop.client.subscribe("sms/status/shop/#")
        async with running(config(tmp_path, broker, sims, [{"name": "shop", "rate": 4}])) as gw:
            await subscribed(gw)
            for i in range(count):
                await shop.submit("sms/submit/shop", **job(f"h-{i}", dlr=False))
            await shop.wait_for(lambda: "sms/status/shop/h-0" in shop.events)
            assert metric(gw, "smppgw_tenant_held", tenant="shop") > 0
        taken_first = len(shop.events)
        async with running(config(tmp_path, broker, sims, [{"name": "shop"}])):
            ids = [f"sms/status/shop/h-{i}" for i in range(count)]
            await shop.wait_for(lambda: all(t in shop.events for t in ids))

    print(f"\nfirst run took {taken_first} of {count} jobs, the second the rest")
    assert taken_first < count
    sent = sorted(s.pdu.short_message for s in sims["viettel"].submits)
    assert sent == sorted(f"job h-{i}".encode() for i in range(count)), "each job sent once"


async def test_each_tenant_reads_only_its_own_replies_and_mo(
    tmp_path: Path, broker: Mosquitto, sims: dict[str, Simulator]
) -> None:
    """Under the shipped ACL a tenant reads replies to its jobs (``sms/reply/<it>/…``) and
    its "text us" MO (``sms/inbound/<it>/…``), and nothing of the other tenant's."""
    tenants = [{"name": "shop", "numbers": ["8079"]}, {"name": "shop2", "keywords": ["SHOP2"]}]
    async with two_tenants(tmp_path, broker, sims, tenants) as (_gateway, shop, shop2):
        for account in (shop, shop2):
            # Subscribed to everything: the broker delivers only what the ACL grants.
            await account.client.subscribe("sms/reply/#")
            await account.client.subscribe("sms/inbound/#")
        await shop.submit("sms/submit/shop", **job("cod-1", expect_reply=600))
        await shop.wait_for(lambda: bool(shop.final("sms/status/shop/cod-1")))
        viettel = sims["viettel"]
        await viettel.send_mo(None, "84981234567", "8079", "1")  # answers shop's job
        await viettel.send_mo(None, "84981111111", "9999", "shop2 hello")  # text us: shop2
        await shop.wait_for(lambda: bool(shop.events.get("sms/reply/shop/cod-1")))
        await shop2.wait_for(lambda: bool(shop2.events.get("sms/inbound/shop2/viettel")))
        await asyncio.sleep(0.3)  # anything misrouted would have arrived by now

    (reply,) = shop.events["sms/reply/shop/cod-1"]
    assert reply["in_reply_to"] == "cod-1" and reply["text"] == "1"
    assert set(shop.events) == {
        "sms/status/shop/cod-1",
        "sms/reply/shop/cod-1",
        "sms/inbound/shop/viettel",
    }
    assert set(shop2.events) == {"sms/inbound/shop2/viettel"}
    assert shop2.events["sms/inbound/shop2/viettel"][0]["in_reply_to"] is None
