"""Cancels over MQTT (``sms/cancel``) against a real gateway, mosquitto and simulator."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from smppgw.gateway import Gateway
from smppgw.pipeline.cancel import parse_id
from smppgw.sim.server import Simulator

from gateway.harness import Observer, gateway_config, running, sim_config
from support.broker import Mosquitto

REPLIES = "shop/replies/c"
NOT_JSON = "not a JSON object with a string id (1-64 of A-Z a-z 0-9 . _ : -)"
TEXT = "OTP 123456"


@pytest.fixture
async def viettel() -> Simulator:
    async with Simulator(sim_config(receipt_delay=0.05, name="viettel")) as sim:
        yield sim


def publish_v5(broker: Mosquitto, topic: str, payload: bytes, data: str = "req-1") -> None:
    """Publish with an MQTT 5 Response Topic (``REPLIES``) and Correlation Data."""
    subprocess.run(
        [
            "mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", "5", "-q", "1",
            "-t", topic, "-m", payload.decode(),
            "-D", "publish", "response-topic", REPLIES,
            "-D", "publish", "correlation-data", data,
        ],
        check=True,
        timeout=10,
    )  # fmt: skip


def answers(obs: Observer) -> dict[bytes | None, Any]:
    """The answers on ``REPLIES`` by their Correlation Data (cancels run concurrently)."""
    return dict(zip(obs.correlation[REPLIES], obs.by_topic[REPLIES], strict=True))


def cancels(gw: Gateway, result: str) -> float:
    value: float = gw.metrics.cancels.labels(result=result)._value.get()
    return value


async def until_state(gw: Gateway, key: str, state: str) -> None:
    """Wait (bounded: 5 s) until the store holds job ``key`` in ``state``."""
    for _ in range(100):
        view = await gw.store.job(key)
        if view is not None and view.state == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {key} never {state}")


async def test_a_queued_job_is_cancelled_never_sent_and_stays_a_duplicate(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with (
        running(gateway_config(tmp_path, mosquitto, {"viettel": viettel})) as gw,
        Observer(mosquitto) as obs,
    ):
        await obs.client.subscribe(REPLIES)
        gw.set_paused("viettel", True)
        await obs.submit(id="c-1", to="0981234567", text=TEXT)
        await until_state(gw, "c-1", "queued")
        publish_v5(mosquitto, "sms/cancel", orjson.dumps({"id": "c-1"}))
        await obs.wait_for(lambda: bool(obs.statuses("c-1")) and bool(obs.by_topic.get(REPLIES)))
        assert [e["status"] for e in obs.statuses("c-1")] == ["cancelled"]
        assert obs.by_topic[REPLIES] == [{"id": "c-1", "cancelled": True}]
        assert obs.correlation[REPLIES] == [b"req-1"]
        # The same id again is a duplicate; resumed, the carrier sends nothing.
        await obs.submit(id="c-1", to="0981234567", text=TEXT)
        await obs.wait_for(lambda: gw.metrics.jobs_duplicate._value.get() == 1)
        gw.set_paused("viettel", False)
        await obs.submit(id="c-2", to="0981234567", text=TEXT)
        await obs.wait_final(["c-2"])
        assert [s.pdu.destination_addr for s in viettel.submits] == ["84981234567"]
        assert len(obs.statuses("c-1")) == 1
        assert cancels(gw, "cancelled") == 1


async def test_a_submitted_job_is_not_touched_and_the_reply_says_why(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with (
        running(gateway_config(tmp_path, mosquitto, {"viettel": viettel})) as gw,
        Observer(mosquitto) as obs,
    ):
        await obs.client.subscribe(REPLIES)
        await obs.submit(id="s-1", to="0981234567", text=TEXT)
        await obs.wait_final(["s-1"])
        publish_v5(mosquitto, "sms/cancel", orjson.dumps({"id": "s-1"}), data="r2")
        publish_v5(mosquitto, "sms/cancel", orjson.dumps({"id": "nope"}), data="r3")
        await obs.wait_for(lambda: len(obs.by_topic.get(REPLIES, [])) == 2)
        assert answers(obs) == {
            b"r2": {"id": "s-1", "cancelled": False, "reason": "already final (delivered)"},
            b"r3": {"id": "nope", "cancelled": False, "reason": "unknown job"},
        }
        assert [e["status"] for e in obs.statuses("s-1")] == ["submitted", "delivered"]
        assert cancels(gw, "not_cancelled") == 2


async def test_a_tenant_cancels_its_own_job_on_its_topic(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel}, tenants=[{"name": "shop"}])
    async with running(config) as gw, Observer(mosquitto) as obs:
        await obs.client.subscribe(REPLIES)
        gw.set_paused("viettel", True)
        job = {"id": "t-1", "to": "0981234567", "text": TEXT}
        await obs.client.publish("sms/submit/shop", orjson.dumps(job))
        await until_state(gw, "shop/t-1", "queued")
        # The default tenant's cancel of the same id does not reach shop's job.
        publish_v5(mosquitto, "sms/cancel", orjson.dumps({"id": "t-1"}), data="d")
        publish_v5(mosquitto, "sms/cancel/ghost", orjson.dumps({"id": "t-1"}), data="g")
        publish_v5(mosquitto, "sms/cancel/shop", orjson.dumps({"id": "t-1"}), data="s")
        await obs.wait_for(lambda: len(obs.by_topic.get(REPLIES, [])) == 3)
        assert answers(obs) == {
            b"d": {"id": "t-1", "cancelled": False, "reason": "unknown job"},
            b"g": {"id": "t-1", "cancelled": False, "reason": "unknown_tenant"},
            b"s": {"id": "t-1", "cancelled": True},
        }
        await obs.wait_for(lambda: bool(obs.by_topic.get("sms/status/shop/t-1")))
        assert [e["status"] for e in obs.by_topic["sms/status/shop/t-1"]] == ["cancelled"]


async def test_garbage_is_counted_and_answered_and_refused_reply_topics_get_nothing(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with (
        running(gateway_config(tmp_path, mosquitto, {"viettel": viettel})) as gw,
        Observer(mosquitto) as obs,
    ):
        await obs.client.subscribe(REPLIES)
        publish_v5(mosquitto, "sms/cancel", b"not json", data="g1")
        publish_v5(mosquitto, "sms/cancel", orjson.dumps({"id": "a/b"}), data="g2")
        await obs.wait_for(lambda: len(obs.by_topic.get(REPLIES, [])) == 2)
        got = answers(obs)
        assert got[b"g1"] == {"id": None, "cancelled": False, "reason": NOT_JSON}
        assert got[b"g2"]["id"] is None and got[b"g2"]["cancelled"] is False
        assert got[b"g2"]["reason"].startswith("id: must be a JSON object")
        # A cancel whose Response Topic is the gateway's own (a status topic) is still
        # taken, and nothing is published there.
        await obs.submit(id="own-1", to="0981234567", text=TEXT)
        await obs.wait_final(["own-1"])
        subprocess.run(
            [
                "mosquitto_pub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-V", "5",
                "-q", "1", "-t", "sms/cancel", "-m", '{"id": "own-1"}',
                "-D", "publish", "response-topic", "sms/status/own-1",
            ],
            check=True,
            timeout=10,
        )  # fmt: skip
        await obs.wait_for(lambda: cancels(gw, "not_cancelled") == 1)
        await obs.client.publish("sms/cancel", b"{}")  # no reply topic: counted, logged
        await obs.wait_for(lambda: cancels(gw, "invalid") == 3)
        assert [e["status"] for e in obs.statuses("own-1")] == ["submitted", "delivered"]
        assert gw.cancels.topic == "sms/cancel"


def test_parse_id_names_what_is_wrong() -> None:
    assert parse_id(b'{"id": "x-1", "extra": 1}') == ("x-1", None)
    assert parse_id(b"[1]")[1] == NOT_JSON
    assert parse_id(b'{"id": 7}')[1].startswith("id: must be")
    assert parse_id(b'{"id": ""}')[0] is None
