"""Cancels over MQTT (``sms/cancel``) against a real gateway, mosquitto and simulator."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from smppgw.gateway import Gateway
from smppgw.pipeline.cancel import parse_id
from smppgw.sim.server import Simulator

from gateway.harness import Observer, gateway_config, running
from support.broker import Mosquitto

REPLIES = "shop/replies/c"
NOT_JSON = "not a JSON object with a string id (1-64 of A-Z a-z 0-9 . _ : -)"
TEXT = "OTP 123456"


def publish_v5(
    broker: Mosquitto, topic: str, payload: bytes, data: str, reply: str = REPLIES
) -> None:
    """Publish with an MQTT 5 Response Topic and Correlation Data."""
    subprocess.run(
        [
            "mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", "5", "-q", "1",
            "-t", topic, "-m", payload.decode(),
            "-D", "publish", "response-topic", reply,
            "-D", "publish", "correlation-data", data,
        ],
        check=True,
        timeout=10,
    )  # fmt: skip


async def ask(
    broker: Mosquitto, obs: Observer, cancels: list[tuple[str, bytes, str]]
) -> dict[bytes | None, Any]:
    """Publish each ``(topic, payload, correlation)`` cancel; the answers on ``REPLIES``."""
    expected = len(obs.by_topic.get(REPLIES, [])) + len(cancels)
    for topic, payload, data in cancels:
        publish_v5(broker, topic, payload, data)
    await obs.wait_for(lambda: len(obs.by_topic.get(REPLIES, [])) == expected)
    return answers(obs)


def answers(obs: Observer) -> dict[bytes | None, Any]:
    """The answers on ``REPLIES`` by their Correlation Data (cancels run concurrently)."""
    return dict(zip(obs.correlation[REPLIES], obs.by_topic[REPLIES], strict=True))


def cancels(gw: Gateway, result: str) -> float:
    value: float = gw.metrics.cancels.labels(result=result)._value.get()
    return value


@contextlib.asynccontextmanager
async def stack(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, **top: Any
) -> AsyncIterator[tuple[Gateway, Observer]]:
    """A running gateway and an observer that also records ``REPLIES``."""
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel}, **top)
    async with running(config) as gw, Observer(mosquitto) as obs:
        await obs.client.subscribe(REPLIES)
        yield gw, obs


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
    async with stack(tmp_path, mosquitto, viettel) as (gw, obs):
        gw.set_paused("viettel", True)
        await obs.submit(id="c-1", to="0981234567", text=TEXT)
        await until_state(gw, "c-1", "queued")
        got = await ask(mosquitto, obs, [("sms/cancel", b'{"id": "c-1"}', "req-1")])
        assert got == {b"req-1": {"id": "c-1", "cancelled": True}}
        await obs.wait_for(lambda: bool(obs.statuses("c-1")))
        assert [e["status"] for e in obs.statuses("c-1")] == ["cancelled"]
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
    async with stack(tmp_path, mosquitto, viettel) as (gw, obs):
        await obs.submit(id="s-1", to="0981234567", text=TEXT)
        await obs.wait_final(["s-1"])
        got = await ask(
            mosquitto,
            obs,
            [("sms/cancel", b'{"id": "s-1"}', "r2"), ("sms/cancel", b'{"id": "nope"}', "r3")],
        )
        assert got == {
            b"r2": {"id": "s-1", "cancelled": False, "reason": "already final (delivered)"},
            b"r3": {"id": "nope", "cancelled": False, "reason": "unknown job"},
        }
        assert [e["status"] for e in obs.statuses("s-1")] == ["submitted", "delivered"]
        assert cancels(gw, "not_cancelled") == 2


async def test_a_tenant_cancels_its_own_job_on_its_topic(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with stack(tmp_path, mosquitto, viettel, tenants=[{"name": "shop"}]) as (gw, obs):
        gw.set_paused("viettel", True)
        job = {"id": "t-1", "to": "0981234567", "text": TEXT}
        await obs.client.publish("sms/submit/shop", orjson.dumps(job))
        await until_state(gw, "shop/t-1", "queued")
        # The default tenant's cancel of the same id does not reach shop's job.
        cancel = b'{"id": "t-1"}'
        got = await ask(
            mosquitto,
            obs,
            [
                (f"sms/cancel{t}", cancel, d)
                for t, d in (("", "d"), ("/ghost", "g"), ("/shop", "s"))
            ],
        )
        assert got == {
            b"d": {"id": "t-1", "cancelled": False, "reason": "unknown job"},
            b"g": {"id": "t-1", "cancelled": False, "reason": "unknown_tenant"},
            b"s": {"id": "t-1", "cancelled": True},
        }
        await obs.wait_for(lambda: bool(obs.by_topic.get("sms/status/shop/t-1")))
        assert [e["status"] for e in obs.by_topic["sms/status/shop/t-1"]] == ["cancelled"]


async def test_garbage_is_counted_and_answered_and_refused_reply_topics_get_nothing(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with stack(tmp_path, mosquitto, viettel) as (gw, obs):
        got = await ask(
            mosquitto,
            obs,
            [("sms/cancel", b"not json", "g1"), ("sms/cancel", b'{"id": "a/b"}', "g2")],
        )
        assert got[b"g1"] == {"id": None, "cancelled": False, "reason": NOT_JSON}
        assert got[b"g2"]["id"] is None and got[b"g2"]["cancelled"] is False
        assert got[b"g2"]["reason"].startswith("id: must be a JSON object")
        # A cancel whose Response Topic is the gateway's own (a status topic) is still
        # taken, and nothing is published there.
        await obs.submit(id="own-1", to="0981234567", text=TEXT)
        await obs.wait_final(["own-1"])
        publish_v5(mosquitto, "sms/cancel", b'{"id": "own-1"}', "o", reply="sms/status/own-1")
        await obs.wait_for(lambda: cancels(gw, "not_cancelled") == 1)
        await obs.client.publish("sms/cancel", b"{}")  # no reply topic: counted, logged
        await obs.wait_for(lambda: cancels(gw, "invalid") == 3)
        # The outbox publishes in order: once this later answer arrived, a publish to the
        # refused topic would have too.
        assert (await ask(mosquitto, obs, [("sms/cancel", b'{"id": "late"}', "g3")]))[b"g3"] == {
            "id": "late",
            "cancelled": False,
            "reason": "unknown job",
        }
        assert [e["status"] for e in obs.statuses("own-1")] == ["submitted", "delivered"]
        assert gw.cancels.topic == "sms/cancel"


def test_parse_id_names_what_is_wrong() -> None:
    assert parse_id(b'{"id": "x-1", "extra": 1}') == ("x-1", None)
    assert parse_id(b"[1]")[1] == NOT_JSON
    assert parse_id(b'{"id": 7}')[1].startswith("id: must be")
    assert parse_id(b'{"id": ""}')[0] is None
