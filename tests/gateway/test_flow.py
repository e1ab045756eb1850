"""The whole flow, in-process: jobs in over MQTT → exact PDUs at the SMSC → events out."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from smppgw.sim.server import Simulator

from gateway.harness import Observer, gateway_config, running, sim_config
from support.broker import Mosquitto, free_port

VIETNAMESE = "Đơn hàng #1984 của bạn đã được giao"


@pytest.fixture
async def viettel() -> Simulator:
    async with Simulator(sim_config(receipt_delay=0.05, name="viettel")) as sim:
        yield sim


async def test_jobs_reach_the_smsc_as_exact_pdus_and_events_come_back(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    long_text = "Order 1984 shipped. " * 20  # 400 GSM chars → 3 parts
    async with running(gateway_config(tmp_path, mosquitto, {"viettel": viettel})):
        async with Observer(mosquitto) as obs:
            await obs.submit(id="vn-1", to="0981234567", text=VIETNAMESE)
            await obs.submit(id="long-1", to="+84861234567", text=long_text, from_="84901234567")
            await obs.wait_final(["vn-1", "long-1"])

    vn = [s for s in viettel.submits if s.pdu.destination_addr == "84981234567"]
    assert len(vn) == 1
    pdu = vn[0].pdu
    assert (pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi) == ("SHOPVN", 5, 0)
    assert (pdu.dest_addr_ton, pdu.dest_addr_npi) == (1, 1)
    assert pdu.data_coding == 8
    assert pdu.short_message.decode("utf-16-be") == VIETNAMESE
    assert pdu.registered_delivery == 1

    parts = [s for s in viettel.submits if s.pdu.destination_addr == "84861234567"]
    assert len(parts) == 3
    refs = set()
    for seq, part in enumerate(parts, start=1):
        assert part.pdu.esm_class & 0x40
        assert part.pdu.data_coding == 0
        assert (part.pdu.source_addr, part.pdu.source_addr_ton) == ("84901234567", 1)
        udh = part.pdu.short_message[:6]
        assert udh[:3] == b"\x05\x00\x03" and udh[4:] == bytes((3, seq))
        refs.add(udh[3])
    assert len(refs) == 1
    assert b"".join(p.pdu.short_message[6:] for p in parts).decode("ascii") == long_text

    events = obs.statuses("long-1")
    assert [e["status"] for e in events] == ["submitted", "delivered"]
    assert events[0]["message_ids"] == [p.message_id for p in parts]
    assert events[0]["carrier"] == "viettel" and events[0]["parts"] == 3
    assert [e["status"] for e in obs.statuses("vn-1")] == ["submitted", "delivered"]
    assert obs.statuses("vn-1")[0]["message_ids"] == [vn[0].message_id]


async def test_mo_reply_is_published_to_inbound_topic(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    reply = "Tôi xác nhận đơn hàng 1984, xin cảm ơn quý khách rất nhiều! " * 2  # 2 UCS2 parts
    async with running(gateway_config(tmp_path, mosquitto, {"viettel": viettel})):
        async with Observer(mosquitto) as obs:
            assert await viettel.send_mo(None, "84981234567", "8079", reply) == 2
            await obs.wait_for(lambda: bool(obs.by_topic.get("sms/inbound/viettel")))
    (mo,) = obs.by_topic["sms/inbound/viettel"]
    assert mo["from"] == "84981234567" and mo["to"] == "8079"
    assert mo["text"] == reply and mo["carrier"] == "viettel"


async def test_prefix_routing_forced_carrier_and_no_route(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        Simulator(sim_config(name="viettel")) as viettel,
        Simulator(sim_config(name="vinaphone")) as vinaphone,
    ):
        sims = {"viettel": viettel, "vinaphone": vinaphone}
        # vinaphone also claims the wider 849: a job may force it onto viettel's 8498 (a
        # forced carrier picks among the carriers claiming the number, issue #11).
        prefixes = {"viettel": ["8498"], "vinaphone": ["8491", "849"]}
        config = gateway_config(tmp_path, mosquitto, sims, prefixes=prefixes)
        async with running(config):
            async with Observer(mosquitto) as obs:
                await obs.submit(id="r-vt", to="0981111111", text="a")
                await obs.submit(id="r-vn", to="0911111111", text="b")
                await obs.submit(id="r-forced", to="0981111112", text="c", carrier="vinaphone")
                await obs.submit(id="r-none", to="0711111111", text="d")
                await obs.submit(id="r-bad", to="0981111113", text="e", carrier="nope")
                await obs.submit(id="r-off", to="0911111114", text="f", carrier="viettel")
                await obs.wait_final(["r-vt", "r-vn", "r-forced", "r-none", "r-bad", "r-off"])
        assert [s.pdu.destination_addr for s in viettel.submits] == ["84981111111"]
        assert sorted(s.pdu.destination_addr for s in vinaphone.submits) == [
            "84911111111",
            "84981111112",
        ]
        assert obs.statuses("r-forced")[0]["carrier"] == "vinaphone"
        (none,) = obs.statuses("r-none")
        assert none["status"] == "rejected" and none["error"]["code"] == "no_route"
        (bad,) = obs.statuses("r-bad")
        assert bad["status"] == "rejected" and bad["error"]["code"] == "unknown_carrier"
        (off,) = obs.statuses("r-off")
        assert off["status"] == "rejected" and off["error"]["code"] == "no_route"
        assert "'viettel' does not serve 84911111114" in off["error"]["reason"]


async def test_duplicates_invalid_jobs_and_garbage(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with running(gateway_config(tmp_path, mosquitto, {"viettel": viettel})) as gw:
        async with Observer(mosquitto) as obs:
            for _ in range(3):
                await obs.submit(id="dup-1", to="0981234567", text="pay 100k by Friday")
            await obs.submit(id="bad-1", to="0981234567", text="x", priority="urgent")
            await obs.submit_raw(b"\xff\xfenot json")
            await obs.submit_raw(b'{"id": "has space", "to": "1", "text": "x"}')
            await obs.wait_final(["dup-1", "bad-1"])
            await obs.wait_for(lambda: len(obs.by_topic.get("sms/rejected", [])) == 2)
            await asyncio.sleep(0.3)  # a duplicate would have been sent by now
    assert len(viettel.submits) == 1
    assert [e["status"] for e in obs.statuses("dup-1")] == ["submitted", "delivered"]
    (bad,) = obs.statuses("bad-1")
    assert bad["status"] == "rejected" and bad["error"]["code"] == "invalid"
    assert "priority" in bad["error"]["reason"]
    reasons = [e["reason"] for e in obs.by_topic["sms/rejected"]]
    assert any("UTF-8" in r for r in reasons) and any(r.startswith("id:") for r in reasons)
    assert gw.metrics.jobs_duplicate._value.get() == 2


async def test_response_topic_and_correlation_data_are_echoed(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with running(gateway_config(tmp_path, mosquitto, {"viettel": viettel})):
        async with Observer(mosquitto) as obs:
            await obs.client.subscribe("shop/replies/7")
            job = orjson.dumps({"id": "rt-1", "to": "0981234567", "text": "OTP 123456"})
            subprocess.run(
                [
                    "mosquitto_pub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-V", "5",
                    "-q", "1", "-t", "sms/submit", "-m", job.decode(),
                    "-D", "publish", "response-topic", "shop/replies/7",
                    "-D", "publish", "correlation-data", "req-42",
                ],
                check=True,
                timeout=10,
            )  # fmt: skip
            await obs.wait_for(lambda: len(obs.by_topic.get("shop/replies/7", [])) == 2)
            await obs.wait_final(["rt-1"])
    replies = obs.by_topic["shop/replies/7"]
    assert [r["status"] for r in replies] == ["submitted", "delivered"]
    assert all(r["id"] == "rt-1" for r in replies)
    assert obs.correlation["shop/replies/7"] == [b"req-42", b"req-42"]
    assert obs.correlation["sms/status/rt-1"] == [None, None]


async def test_metrics_and_readiness_of_a_running_gateway(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    port = free_port()
    config = gateway_config(
        tmp_path, mosquitto, {"viettel": viettel}, metrics={"listen": f"127.0.0.1:{port}"}
    )
    async with running(config), Observer(mosquitto) as obs:
        await obs.submit(id="m-1", to="0981234567", text="OTP 4321")
        await obs.wait_final(["m-1"])
        await asyncio.sleep(1.2)  # one metrics refresh
        ready = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
        scrape = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    assert ready[0] == 200, ready
    body = scrape[1]
    assert 'smppgw_jobs_received_total{lane="normal"} 1.0' in body
    assert 'smppgw_receipts_total{carrier="viettel",state="DELIVRD"} 1.0' in body
    assert 'smppgw_jobs_final_total{carrier="viettel",status="delivered"} 1.0' in body
    assert "secret" not in body


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_ready_policy_any_keeps_the_gateway_ready_while_one_carrier_is_down(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator
) -> None:
    async with Simulator(sim_config(name="vinaphone")) as gone:
        pass  # its port is closed again: vinaphone's binds keep failing
    port = free_port()
    config = gateway_config(
        tmp_path,
        mosquitto,
        {"viettel": viettel, "vinaphone": gone},
        metrics={"listen": f"127.0.0.1:{port}", "ready_policy": "any"},
    )
    async with running(config) as gw:
        await asyncio.sleep(1.2)  # one metrics refresh reports the binds
        any_ready = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
        gw.health.set_policy("all")  # what the default would answer
        all_ready = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
    assert any_ready[0] == 200, any_ready
    assert orjson.loads(any_ready[1])["policy"] == "any"
    assert all_ready[0] == 503
    assert "carrier vinaphone: no bind up" in all_ready[1]
