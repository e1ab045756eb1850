"""Binds, validation, enquire_link, unbind, nacks and broken frames, over real TCP."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from smppgw.sim.server import SimAccount, SimConfig, Simulator
from smppgw.smpp.codec import encode
from smppgw.smpp.constants import CommandId, Status, Tag
from smppgw.smpp.pdu import (
    DataSm,
    DataSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    QuerySm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)

from sim.client import RawClient, submit_sm


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(accounts=[SimAccount("test", "test", max_binds=2)])
    async with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
async def bound(sim: Simulator) -> AsyncIterator[RawClient]:
    client = await RawClient.connect(sim.port)
    resp = await client.bind()
    assert resp.status == 0
    yield client
    await client.close()


async def test_bind_modes_and_bind_resp(sim: Simulator) -> None:
    for mode in ("transmitter", "receiver"):
        client = await RawClient.connect(sim.port)
        resp = await client.bind(mode=mode)
        assert resp.status == 0 and resp.system_id == "sim"  # type: ignore[attr-defined]
        assert resp.tlv_int(Tag.SC_INTERFACE_VERSION) == 0x34
        await client.close()


async def test_second_bind_on_one_connection_is_alybnd(bound: RawClient) -> None:
    resp = await bound.bind(mode="transmitter")
    assert resp.status == Status.ESME_RALYBND
    assert (await bound.submit()).status == 0  # the first bind still stands


async def test_max_binds_per_account(sim: Simulator) -> None:
    clients = [await RawClient.connect(sim.port) for _ in range(3)]
    statuses = [(await c.bind()).status for c in clients]
    assert statuses == [0, 0, Status.ESME_RBINDFAIL]
    await clients[0].request(Unbind())
    assert await clients[0].closed()
    await asyncio.sleep(0.05)
    assert (await clients[2].bind()).status == 0  # a freed slot can be used again
    for c in clients:
        await c.close()


async def test_commands_before_bind(sim: Simulator) -> None:
    client = await RawClient.connect(sim.port)
    assert (await client.submit()).status == Status.ESME_RINVBNDSTS
    assert (await client.request(EnquireLink())).status == 0  # allowed in any state
    assert sim.submits == []
    await client.close()


async def test_receiver_cannot_submit(sim: Simulator) -> None:
    client = await RawClient.connect(sim.port)
    await client.bind(mode="receiver")
    assert (await client.submit()).status == Status.ESME_RINVBNDSTS
    await client.close()


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"destination_addr": ""}, Status.ESME_RINVDSTADR),
        ({"destination_addr": "84-912"}, Status.ESME_RINVDSTADR),
        ({"source_addr": "WAY-TOO-LONG-NAME"}, Status.ESME_RINVSRCADR),
        ({"data_coding": 0x09}, Status.ESME_RINVDCS),
        ({"data_coding": 0x08, "short_message": b"\x00a" * 71}, Status.ESME_RINVMSGLEN),
        ({"short_message": b"a" * 161}, Status.ESME_RINVMSGLEN),
        ({"validity_period": "1h"}, Status.ESME_RINVEXPIRY),
    ],
)
async def test_validation(
    sim: Simulator, bound: RawClient, fields: dict[str, object], status: int
) -> None:
    resp = await bound.submit(**fields)
    assert resp.status == status
    assert isinstance(resp, SubmitSmResp) and resp.message_id == ""
    assert sim.submits == [] and sim.counters.submits_rejected == 1


async def test_valid_edge_cases_are_accepted(sim: Simulator, bound: RawClient) -> None:
    ok = [
        {"data_coding": 0x08, "short_message": b"\x00a" * 70},
        {"short_message": b"a" * 160},
        {"esm_class": 0x40, "data_coding": 0x08, "short_message": bytes(6) + b"\x00a" * 67},
        {"short_message": b"", "tlvs": [(Tag.MESSAGE_PAYLOAD, b"x" * 1000)]},
        {"dest_addr_ton": 5, "destination_addr": "SHOP"},
    ]
    for fields in ok:
        assert (await bound.submit(**fields)).status == 0, fields
    assert len(sim.submits) == len(ok)


async def test_message_ids_are_fresh_and_hex(sim: Simulator, bound: RawClient) -> None:
    ids = [(await bound.submit()).message_id for _ in range(5)]  # type: ignore[attr-defined]
    assert len(set(ids)) == 5
    assert all(int(i, 16) >= 0 for i in ids)
    assert [s.message_id for s in sim.submits] == ids


async def test_decimal_ids_and_data_sm() -> None:
    async with Simulator(SimConfig(id_format="decimal")) as sim:
        client = await RawClient.connect(sim.port)
        await client.bind()
        resp = await client.request(
            DataSm(
                dest_addr_ton=1,
                destination_addr="84912345678",
                tlvs=[(Tag.MESSAGE_PAYLOAD, b"hello")],
            )
        )
        assert isinstance(resp, DataSmResp) and resp.status == 0
        assert resp.message_id.isdigit()
        assert sim.submits[0].pdu.tlv(Tag.MESSAGE_PAYLOAD) == b"hello"
        missing = await client.request(DataSm(dest_addr_ton=1, destination_addr="84912345678"))
        assert missing.status == Status.ESME_RMISSINGOPTPARAM
        await client.close()


async def test_enquire_link_and_unbind(sim: Simulator, bound: RawClient) -> None:
    resp = await bound.request(EnquireLink())
    assert isinstance(resp, EnquireLinkResp) and resp.status == 0
    resp = await bound.request(Unbind())
    assert isinstance(resp, UnbindResp) and resp.status == 0
    assert await bound.closed()


async def test_sim_sends_enquire_link_to_idle_clients() -> None:
    async with Simulator(SimConfig(enquire_link_interval=0.1)) as sim:
        client = await RawClient.connect(sim.port)
        await client.bind()
        probe = await client.expect(lambda p: isinstance(p, EnquireLink), timeout=2)
        client.send(probe.response())
        await asyncio.sleep(0.15)
        assert sim.counters.enquire_links_sent >= 1 and sim.counters.link_timeouts == 0
        assert not client.eof
        # A client that stops answering is disconnected.
        await client.expect(lambda p: isinstance(p, EnquireLink), timeout=2)
        assert await client.closed(timeout=2)
        assert sim.counters.link_timeouts == 1
        await client.close()


async def test_unknown_command_gets_generic_nack(bound: RawClient) -> None:
    bound.send(struct.pack(">IIII", 16, 0x00000077, 0, 42))
    nack = await bound.expect(lambda p: p.sequence == 42)
    assert isinstance(nack, GenericNack) and nack.status == Status.ESME_RINVCMDID
    assert (await bound.submit()).status == 0  # the connection carries on


async def test_unsupported_request_gets_its_response_with_an_error(bound: RawClient) -> None:
    resp = await bound.request(QuerySm(message_id="1"))
    assert resp.command_id == CommandId.QUERY_SM_RESP and resp.status == Status.ESME_RQUERYFAIL


async def test_bad_body_is_nacked(bound: RawClient) -> None:
    # A submit_sm whose first C-string never ends.
    bound.send(struct.pack(">IIII", 20, CommandId.SUBMIT_SM, 0, 9) + b"abcd")
    nack = await bound.expect(lambda p: p.sequence == 9)
    assert isinstance(nack, GenericNack) and nack.status != 0
    assert (await bound.submit()).status == 0


async def test_broken_frame_closes_only_that_connection(sim: Simulator) -> None:
    good = await RawClient.connect(sim.port)
    bad = await RawClient.connect(sim.port)
    await good.bind()
    await bad.bind()
    bad.send(struct.pack(">IIII", 8, CommandId.SUBMIT_SM, 0, 1))  # command_length < 16
    assert await bad.closed()
    assert sim.counters.frame_errors == 1
    assert (await good.submit()).status == 0
    await good.close()
    await bad.close()


async def test_responses_to_many_requests_in_one_read(sim: Simulator, bound: RawClient) -> None:
    pdus = [submit_sm(sequence=100 + i) for i in range(50)]
    bound.send(b"".join(encode(p) for p in pdus))
    for p in pdus:
        assert (await bound.response(p)).status == 0
    assert len(sim.submits) == 50


async def test_stop_unbinds_clients() -> None:
    sim = Simulator(SimConfig())
    await sim.start()
    client = await RawClient.connect(sim.port)
    await client.bind()
    stopping = asyncio.create_task(sim.stop())
    unbind = await client.expect(lambda p: isinstance(p, Unbind))
    client.send(unbind.response())
    await stopping
    assert await client.closed()
    await client.close()
