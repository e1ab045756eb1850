"""Issue #11, intake guards: what a hostile publisher on the broker can no longer make the
gateway do. Real mosquitto, real SMPP to the simulator, real SQLite; hostile jobs are
published with ``mosquitto_pub`` (an independent MQTT 5 client that sets any property).

- finding 1: a Response Topic the gateway must not publish to (``x/#``, another job's
  status topic, ``$SYS``, outside ``mqtt.response_prefixes``) or oversized Correlation Data
  is refused at intake, and the gateway keeps publishing every other job's events;
- finding 2: a forced ``carrier`` must claim the destination; international numbers need
  ``routing.allow_international``;
- finding 4: oversized packets are dropped by the broker (Maximum Packet Size in CONNECT),
  the gateway's memory stays flat (RSS figures printed);
- finding 5: retained jobs are never sent (Retain Handling 2, retain flag refused);
- supply chain: a gmqtt without an internal the flow control relies on fails by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gmqtt
import orjson
import pytest
import yaml
from gmqtt.mqtt.handler import MqttPackageHandler
from gmqtt.mqtt.protocol import BaseMQTTProtocol, MQTTProtocol
from gmqtt.storage import PersistentStorage

from smppgw.envelope import RETAINED
from smppgw.gateway import Gateway
from smppgw.gmqtt_internals import GmqttChanged
from smppgw.mqtt import MqttClient, max_packet_size
from smppgw.settings import MqttConfig
from smppgw.sim.server import Simulator

from gateway.harness import Observer, gateway_config, running, sim_config
from reliability.stack import running as running_processes
from support.broker import Mosquitto

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None, reason="mosquitto_pub not installed"
)


async def publish(
    broker: Mosquitto,
    payload: bytes,
    *,
    response_topic: str | None = None,
    correlation: str | None = None,
    retain: bool = False,
    topic: str = "sms/submit",
) -> None:
    """One QoS 1 PUBLISH by ``mosquitto_pub`` (MQTT 5), returning once it is PUBACKed."""
    args = ["-h", broker.host, "-p", str(broker.port), "-V", "5", "-q", "1", "-t", topic, "-s"]
    if response_topic is not None:
        args += ["-D", "publish", "response-topic", response_topic]
    if correlation is not None:
        args += ["-D", "publish", "correlation-data", correlation]
    if retain:
        args.append("-r")
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", *args, stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(payload), 60)
    assert proc.returncode == 0, err


def spec(job_id: str, to: str = "0981234567", **extra: Any) -> dict[str, Any]:
    """A job whose text names it, so the SMSC's record says which job each submit was."""
    return {"id": job_id, "to": to, "text": f"text of {job_id}", **extra}


def job(job_id: str, to: str = "0981234567", **extra: Any) -> bytes:
    return orjson.dumps(spec(job_id, to, **extra))


def texts(sim: Simulator) -> list[str]:
    return [s.pdu.short_message.decode("latin-1") for s in sim.submits]


def rejected(obs: Observer, job_id: str) -> dict[str, Any]:
    """The job's only status event, which must be ``rejected``: its error."""
    (event,) = obs.statuses(job_id)
    assert event["status"] == "rejected", event
    error: dict[str, Any] = event["error"]
    return error


def rejected_count(gw: Gateway, code: str) -> float:
    value = gw.metrics.registry.get_sample_value("smppgw_jobs_rejected_total", {"reason": code})
    return value or 0.0


@pytest.fixture
async def viettel() -> AsyncIterator[Simulator]:
    async with Simulator(sim_config(name="viettel")) as sim:
        yield sim


# ------------------------------------------------------------------ finding 1: replies

#: job id → (Response Topic, Correlation Data, the refusal's exact reason)
HOSTILE_REPLIES: dict[str, tuple[str, str | None, str]] = {
    "rt-wild": ("x/#", "c", "response_topic: contains a wildcard '#'"),
    "rt-plus": ("x/+/y", None, "response_topic: contains a wildcard '+'"),
    "rt-other": (
        "sms/status/other",
        "c",
        "response_topic: inside the gateway's own topic tree (sms/status)",
    ),
    "rt-submit": (
        "sms/submit",
        None,
        "response_topic: inside the gateway's own topic tree (sms/submit)",
    ),
    "rt-sys": (
        "$SYS/x",
        None,
        "response_topic: starts with '$' (reserved for the broker)",
    ),
    "rt-long": ("replies/" + "a" * 300, None, "response_topic: 308 bytes, over the 256-byte limit"),
    "rt-corr": (
        "replies/corr",
        "c" * 300,
        "correlation_data: 300 bytes, over the 256-byte limit (mqtt.max_correlation)",
    ),
}


async def test_bad_response_topics_are_refused_and_other_jobs_events_still_flow(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    good = [f"good-{i}" for i in range(5)]
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel})
    async with running(config) as gw:
        async with Observer(mosquitto) as obs:
            await obs.client.subscribe("replies/#")
            await obs.client.subscribe("x/+")
            for i, (job_id, (topic, correlation, _)) in enumerate(HOSTILE_REPLIES.items()):
                await publish(mosquitto, job(job_id), response_topic=topic, correlation=correlation)
                if i < len(good):  # interleaved: a wedged publisher would stop these
                    await publish(
                        mosquitto, job(good[i]), response_topic=f"replies/{good[i]}",
                        correlation=f"corr-{i}",
                    )  # fmt: skip
            await obs.wait_final([*HOSTILE_REPLIES, *good], timeout=20)
            await obs.wait_for(
                lambda: all(len(obs.by_topic.get(f"replies/{j}", [])) == 2 for j in good)
            )
            await asyncio.sleep(0.3)  # anything published to a wrong topic has arrived by now
            assert gw.mqtt.connected
            assert rejected_count(gw, "invalid") == len(HOSTILE_REPLIES)
    for job_id, (_, _, reason) in HOSTILE_REPLIES.items():
        assert rejected(obs, job_id) == {"code": "invalid", "reason": reason}
    # Not one event on another job's status topic, nor on a refused Response Topic.
    assert obs.statuses("other") == []
    assert sorted(t for t in obs.by_topic if not t.startswith("sms/status/")) == sorted(
        f"replies/{j}" for j in good
    )
    for i, job_id in enumerate(good):
        assert [e["status"] for e in obs.by_topic[f"replies/{job_id}"]] == [
            "submitted",
            "delivered",
        ]
        assert obs.correlation[f"replies/{job_id}"] == [f"corr-{i}".encode()] * 2
    assert sorted(texts(viettel)) == sorted(f"text of {j}" for j in good)
    # A refused Response Topic or Correlation Data is not even stored.
    with contextlib.closing(sqlite3.connect(tmp_path / "gw.db")) as db:
        rows = db.execute(
            "SELECT job_id, response_topic, correlation_data FROM jobs WHERE job_id LIKE 'rt-%'"
        ).fetchall()
        bad_topics = db.execute(
            "SELECT count(*) FROM outbox WHERE topic NOT LIKE 'sms/status/%'"
        ).fetchone()[0]
    assert sorted(rows) == sorted((j, None, None) for j in HOSTILE_REPLIES)
    assert bad_topics == 0


async def test_response_prefixes_are_enforced(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    mqtt = {"host": mosquitto.host, "port": mosquitto.port, "client_id": "gw-prefixes"}
    mqtt["response_prefixes"] = ["shop/replies"]
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel}, mqtt=mqtt)
    async with running(config) as gw:
        async with Observer(mosquitto) as obs:
            await obs.client.subscribe("shop/#")
            await obs.client.subscribe("crm/#")
            await publish(mosquitto, job("p-ok"), response_topic="shop/replies/7", correlation="a")
            await publish(mosquitto, job("p-out"), response_topic="crm/replies/7")
            await publish(mosquitto, job("p-near"), response_topic="shop/repliesX")
            await obs.wait_final(["p-ok", "p-out", "p-near"])
            await obs.wait_for(lambda: len(obs.by_topic.get("shop/replies/7", [])) == 2)
            await asyncio.sleep(0.3)
            assert rejected_count(gw, "invalid") == 2
    reason = "response_topic: not under mqtt.response_prefixes (shop/replies)"
    assert rejected(obs, "p-out") == {"code": "invalid", "reason": reason}
    assert rejected(obs, "p-near") == {"code": "invalid", "reason": reason}
    assert [e["status"] for e in obs.statuses("p-ok")] == ["submitted", "delivered"]
    assert [e["id"] for e in obs.by_topic["shop/replies/7"]] == ["p-ok", "p-ok"]
    assert "crm/replies/7" not in obs.by_topic and "shop/repliesX" not in obs.by_topic
    assert texts(viettel) == ["text of p-ok"]


# ------------------------------------------------------------------ finding 2: destinations


async def test_forced_carrier_must_serve_the_number_and_international_needs_allowing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    prefixes = {"viettel": ["8498", "882"], "vinaphone": ["8491"]}
    async with (
        Simulator(sim_config(name="viettel")) as viettel,
        Simulator(sim_config(name="vinaphone")) as vinaphone,
    ):
        sims = {"viettel": viettel, "vinaphone": vinaphone}
        national = gateway_config(tmp_path, mosquitto, sims, prefixes=prefixes)
        async with running(national) as gw:
            async with Observer(mosquitto) as obs:
                # Finding 2 as reported: a forced carrier onto an international premium range.
                await publish(mosquitto, job("d-premium", "+882345678901", carrier="viettel"))
                await publish(mosquitto, job("d-premium-routed", "+882345678902"))
                await publish(mosquitto, job("d-forced", "0981234567", carrier="vinaphone"))
                await publish(mosquitto, job("d-ok", "0981234567"))
                await obs.wait_final(["d-premium", "d-premium-routed", "d-forced", "d-ok"])
                assert rejected_count(gw, "no_route") == 3
        outside = (
            "to: {} is outside country code 84, and routing.allow_international does not "
            "list its country code"
        )
        assert rejected(obs, "d-premium") == {
            "code": "no_route",
            "reason": outside.format("882345678901"),
        }
        assert rejected(obs, "d-premium-routed")["reason"] == outside.format("882345678902")
        assert rejected(obs, "d-forced") == {
            "code": "no_route",
            "reason": "to: carrier 'vinaphone' does not serve 84981234567 (its prefixes: 8491)",
        }
        assert [s.pdu.destination_addr for s in viettel.submits] == ["84981234567"]
        assert texts(viettel) == ["text of d-ok"] and vinaphone.submits == []

        # The same numbers once +882 is allowed: routed, and still only to a carrier that
        # claims them.
        allowed = gateway_config(
            tmp_path,
            mosquitto,
            sims,
            prefixes=prefixes,
            client_id="gw-intl",
            store={"path": str(tmp_path / "intl.db")},
            routing={"country_code": "84", "allow_international": ["882"]},
        )
        async with running(allowed):
            async with Observer(mosquitto, "observer-intl") as obs:
                await publish(mosquitto, job("i-premium", "+882345678903", carrier="viettel"))
                await publish(mosquitto, job("i-forced", "+882345678904", carrier="vinaphone"))
                await obs.wait_final(["i-premium", "i-forced"])
        assert obs.final("i-premium")[0]["status"] == "delivered"
        assert rejected(obs, "i-forced")["code"] == "no_route"
        assert viettel.submits[-1].pdu.destination_addr == "882345678903"
        assert vinaphone.submits == []


# ------------------------------------------------------------------ finding 5: retained jobs


async def test_retained_jobs_are_never_sent(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    # Left on the broker before any gateway ran: a new session must not be handed it.
    await publish(mosquitto, job("ret-before"), retain=True)
    config = gateway_config(tmp_path, mosquitto, {"viettel": viettel})
    async with running(config) as gw:
        async with Observer(mosquitto) as obs:
            await publish(mosquitto, job("barrier-1"))
            # Published with retain while the gateway runs: refused, named.
            await publish(mosquitto, job("ret-live"), retain=True)
            await obs.wait_final(["barrier-1", "ret-live"])
            await asyncio.sleep(0.3)
            assert rejected_count(gw, "invalid") == 1
    assert rejected(obs, "ret-live") == {"code": "invalid", "reason": RETAINED}
    assert obs.statuses("ret-before") == []
    # A new instance (new session) subscribing later is not handed ret-live either.
    again = gateway_config(
        tmp_path, mosquitto, {"viettel": viettel}, client_id="gw-second",
        store={"path": str(tmp_path / "second.db")},
    )  # fmt: skip
    async with running(again):
        async with Observer(mosquitto, "observer-2") as obs2:
            await publish(mosquitto, job("barrier-2"))
            await obs2.wait_final(["barrier-2"])
            await asyncio.sleep(0.3)
    assert obs2.statuses("ret-live") == [] and obs2.statuses("ret-before") == []
    assert sorted(texts(viettel)) == ["text of barrier-1", "text of barrier-2"]


# ------------------------------------------------------------------ finding 4: packet size

BIG = 40 * 1024 * 1024


async def test_oversized_jobs_are_dropped_by_the_broker_and_memory_stays_flat(
    tmp_path: Path, make_mosquitto: Any
) -> None:
    # Debug logging shows the broker's side of it: "Dropping too large outgoing PUBLISH".
    broker = make_mosquitto(extra_config="log_type debug")
    async with running_processes(tmp_path, broker) as run:
        await run.obs.publish(spec("warm-up"))
        await run.obs.wait_final(["warm-up"], timeout=20)
        before = run.gw.rss()
        started = time.monotonic()
        for i in range(3):
            # A job with a usable id: without the packet limit it is read whole, then refused.
            payload = b'{"id":"big-%d","to":"0981234567","text":"' % i
            await publish(broker, payload + b"x" * BIG + b'"}')
        published = time.monotonic() - started
        after_ids = [f"after-{i}" for i in range(20)]
        for job_id in after_ids:
            await run.obs.publish(spec(job_id))
        await run.obs.wait_final(after_ids, timeout=30)
        assert run.gw.alive
        after = run.gw.rss()
        peak = run.gw.note_rss()
        await run.finish(["warm-up", *after_ids])
    limit = max_packet_size(MqttConfig())
    dropped = broker.log_path.read_text(errors="replace").count("Dropping too large outgoing")
    print(
        f"\n3 jobs of {BIG / 2**20:.0f} MiB each (published in {published:.1f} s), "
        f"Maximum Packet Size {limit} bytes: gateway RSS {before / 2**20:.1f} MiB before, "
        f"{after / 2**20:.1f} MiB after, peak {peak / 2**20:.1f} MiB; "
        f"broker log: {dropped} oversized PUBLISH dropped"
    )
    assert dropped == 3
    assert not any(j.startswith("big-") for j in run.obs.finals)
    assert peak - before < 20 * 2**20, (before, peak)
    submitted = {s.text for s in run.submits}
    assert not any(t.startswith("x") for t in submitted)


# ------------------------------------------------------------------ supply chain


@pytest.mark.parametrize(
    ("owner", "name", "named"),
    [
        (BaseMQTTProtocol, "read", "MQTTProtocol.read missing"),
        (MQTTProtocol, "_read_loop", "MQTTProtocol._read_loop missing"),
        (PersistentStorage, "remove_message_by_mid", "PersistentStorage.remove_message_by_mid"),
        (gmqtt.Client, "_send_command_with_mid", "Client._send_command_with_mid missing"),
        (MqttPackageHandler, "_handle_publish_packet", "MqttPackageHandler._handle_publish"),
    ],
)
def test_a_gmqtt_without_an_internal_we_rely_on_fails_by_name(
    monkeypatch: pytest.MonkeyPatch, owner: type, name: str, named: str
) -> None:
    monkeypatch.delattr(owner, name)
    with pytest.raises(GmqttChanged) as info:
        MqttClient(MqttConfig(client_id="gmqtt-check"))
    message = str(info.value)
    assert message.startswith(f"gmqtt {gmqtt.__version__} changed: ")
    assert named in message and "smppgw's flow control needs it" in message


def test_a_gmqtt_internal_of_another_shape_fails_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def read(self: object, n: int = -1) -> bytes:  # no longer a coroutine
        return b""

    monkeypatch.setattr(MQTTProtocol, "read", read)
    with pytest.raises(GmqttChanged, match=r"MQTTProtocol\.read is not a coroutine function"):
        MqttClient(MqttConfig(client_id="gmqtt-check"))
    monkeypatch.undo()
    MqttClient(MqttConfig(client_id="gmqtt-check"))  # the real gmqtt passes


def test_the_daemon_refuses_to_start_on_such_a_gmqtt(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"path": str(tmp_path / "gw.db")},
                "metrics": {"listen": None},
                "log": {"format": "json"},
                "carriers": [
                    {"name": "c", "host": "127.0.0.1", "port": 1, "system_id": "s",
                     "password": "p", "prefixes": ["8498"]}
                ],
            }
        )
    )  # fmt: skip
    # `smppgw run`, with one internal gone from the gmqtt it imports.
    script = (
        "import sys; from gmqtt.mqtt import protocol; del protocol.BaseMQTTProtocol.read; "
        "from smppgw.cli import main; sys.exit(main(['run', '--config', sys.argv[1]]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(config)], capture_output=True, timeout=60, text=True
    )
    assert done.returncode == 1, done.stderr
    (line,) = [orjson.loads(x) for x in done.stderr.splitlines() if "gmqtt_incompatible" in x]
    assert line["level"] == "error"
    assert "changed: MQTTProtocol.read missing; smppgw's flow control needs it" in line["error"]
