"""The HTTP control port (stats, submits, MO, faults) and the JSON-lines PDU log."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from smppgw.sim.server import SimAccount, SimConfig, Simulator
from smppgw.smpp.constants import Status, Tag
from smppgw.smpp.pdu import DeliverSm
from smppgw.smpp.text import Reassembler, decode_mo

from sim.client import RawClient


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(
        accounts=[SimAccount("shop", "pw"), SimAccount("bank", "pw")], control_port=0
    )
    async with Simulator(config) as simulator:
        yield simulator


async def http(sim: Simulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    def call() -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{sim.control_port}{path}", data=data, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    return await asyncio.to_thread(call)


async def test_stats(sim: Simulator) -> None:
    client = await RawClient.connect(sim.port)
    await client.bind("shop", "pw")
    for _ in range(3):
        await client.submit(registered_delivery=1)
    for _ in range(3):
        await client.deliver()
    await asyncio.sleep(0.05)
    status, stats = await http(sim, "GET", "/stats")
    assert status == 200
    assert stats["binds"] == 1 and stats["submits_accepted"] == 3
    assert stats["receipts_sent"] == 3 and stats["receipts_acknowledged"] == 3
    assert stats["accepted_per_second"] == pytest.approx(3, abs=0.5)
    assert stats["accounts"]["shop"]["binds"] == 1
    assert "pw" not in json.dumps(stats)
    await client.close()


async def test_submits_since(sim: Simulator) -> None:
    client = await RawClient.connect(sim.port)
    await client.bind("shop", "pw")
    ids = []
    for i in range(4):
        resp = await client.submit(
            short_message=f"m{i}".encode(), tlvs=[(Tag.USER_MESSAGE_REFERENCE, b"\x00\x07")]
        )
        ids.append(resp.message_id)  # type: ignore[attr-defined]
    status, page = await http(sim, "GET", "/submits?since=1&limit=2")
    assert status == 200 and page["next"] == 3 and page["total"] == 4
    first = page["submits"][0]
    assert first["index"] == 1 and first["message_id"] == ids[1]
    assert first["account"] == "shop" and first["destination"] == "84912345678"
    assert first["source"] == "SHOPVN" and first["data_coding"] == 0
    assert bytes.fromhex(first["short_message"]) == b"m1"
    assert first["tlvs"] == [[Tag.USER_MESSAGE_REFERENCE, "0007"]]
    assert first["time"] > 1e9 and first["at"] == sim.submits[1].at
    _, rest = await http(sim, "GET", "/submits?since=3")
    assert [s["message_id"] for s in rest["submits"]] == ids[3:] and rest["next"] == 4
    _, empty = await http(sim, "GET", "/submits?since=4")
    assert empty["submits"] == [] and empty["next"] == 4
    await client.close()


async def test_mo_short_gsm_to_chosen_account(sim: Simulator) -> None:
    shop = await RawClient.connect(sim.port)
    bank = await RawClient.connect(sim.port)
    await shop.bind("shop", "pw", mode="receiver")
    await bank.bind("bank", "pw", mode="receiver")
    status, body = await http(
        sim, "POST", "/mo", {"system_id": "bank", "from": "84912345678", "to": "8079", "text": "1"}
    )
    assert status == 202 and body["parts"] == 1
    mo = await bank.deliver()
    assert (mo.source_addr, mo.destination_addr) == ("84912345678", "8079")
    assert mo.esm_class == 0 and mo.data_coding == 0 and mo.short_message == b"1"
    assert not [p for p in shop.inbox if isinstance(p, DeliverSm)]
    await asyncio.sleep(0.05)
    assert sim.counters.mo_sent == 1 and sim.counters.mo_acknowledged == 1
    await shop.close()
    await bank.close()


async def test_long_ucs2_mo_arrives_in_concatenated_parts(sim: Simulator) -> None:
    client = await RawClient.connect(sim.port)
    await client.bind("shop", "pw")  # the default account is the first one
    text = "Xác nhận đơn hàng 1984. " * 8  # Vietnamese: UCS2, 192 characters
    status, body = await http(
        sim, "POST", "/mo", {"from": "84912345678", "to": "8079", "text": text}
    )
    assert status == 202 and body["parts"] == 3
    parts = [await client.deliver() for _ in range(3)]
    assert all(p.data_coding == 0x08 and p.esm_class & 0x40 for p in parts)
    refs = {p.short_message[3] for p in parts}
    assert len(refs) == 1
    assert [p.short_message[4:6] for p in parts] == [b"\x03\x01", b"\x03\x02", b"\x03\x03"]
    reassembler = Reassembler()
    results = [
        reassembler.add(
            ("84912345678", "8079"), decode_mo(p.short_message, p.data_coding, p.esm_class, p.tlvs)
        )
        for p in parts
    ]
    assert results[:2] == [None, None] and results[2] == text
    await client.close()


async def test_mo_waits_for_a_receiver(sim: Simulator) -> None:
    assert await sim.send_mo("shop", "84912345678", "8079", "hello") == 1
    client = await RawClient.connect(sim.port)
    await client.bind("shop", "pw", mode="transceiver")
    assert (await client.deliver()).short_message == b"hello"
    await client.close()


async def test_mo_errors(sim: Simulator) -> None:
    status, body = await http(sim, "POST", "/mo", {"from": "1", "text": "x"})
    assert status == 400 and "to" in body["error"]
    status, _ = await http(
        sim, "POST", "/mo", {"system_id": "x", "from": "1", "to": "2", "text": "y"}
    )
    assert status == 400
    status, _ = await http(sim, "GET", "/mo")
    assert status == 405
    status, _ = await http(sim, "GET", "/nothing")
    assert status == 404


async def test_config_sets_faults_at_run_time(sim: Simulator) -> None:
    client = await RawClient.connect(sim.port)
    await client.bind("shop", "pw")
    status, body = await http(
        sim, "POST", "/config", {"reject_fraction": 1.0, "reject_status": "ESME_RINVDSTADR"}
    )
    assert status == 200 and body["faults"]["reject_status"] == Status.ESME_RINVDSTADR
    assert (await client.submit()).status == Status.ESME_RINVDSTADR
    status, body = await http(sim, "POST", "/config", {"reject_fraction": 0, "receipt_delay": 0.2})
    assert status == 200 and body["receipt_delay"] == 0.2
    assert (await client.submit()).status == 0
    status, body = await http(sim, "POST", "/config", {"reject_fraction": 3})
    assert status == 400 and "reject_fraction" in body["error"]
    status, body = await http(sim, "POST", "/config", {"no_such_fault": 1})
    assert status == 400
    status, body = await http(sim, "GET", "/config")
    assert body["faults"]["reject_fraction"] == 0
    await client.close()


async def test_pdu_log(tmp_path: Path) -> None:
    log = tmp_path / "pdus.jsonl"
    config = SimConfig(pdu_log=str(log), name="viettel", accounts=[SimAccount("shop", "s3cret")])
    async with Simulator(config) as sim:
        client = await RawClient.connect(sim.port)
        await client.bind("shop", "s3cret")
        await client.submit(registered_delivery=1)
        await client.deliver()
        await client.close()
        await asyncio.sleep(0.05)
    lines = [orjson.loads(line) for line in log.read_text().splitlines()]
    seen = [(r["dir"], r.get("command", r.get("event"))) for r in lines]
    assert seen[:6] == [
        ("in", "bind_transceiver"),
        ("out", "bind_transceiver_resp"),
        ("in", "submit_sm"),
        ("out", "submit_sm_resp"),
        ("out", "deliver_sm"),
        ("in", "deliver_sm_resp"),
    ]
    submit = lines[2]
    assert submit["smsc"] == "viettel" and submit["destination_addr"] == "84912345678"
    assert submit["short_message"] == b"hello".hex() and submit["status"] == "ESME_ROK"
    assert lines[3]["message_id"] and lines[1]["system_id"] == "viettel"
    assert lines[0]["system_id"] == "shop"
    assert "s3cret" not in log.read_text()
