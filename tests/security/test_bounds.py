"""Finding 4 (second and third parts): what an SMSC or an HTTP client can make the gateway
hold is bounded.

* MO reassembly: an SMSC sends 1,500 concatenated parts of 60 KB (on main: +80 MB held for
  the reassembly timeout), then 1,500 first parts of 1,500 octets each (2.2 MB, over the
  1 MiB reassembly budget). The oversized parts are refused with ESME_RINVMSGLEN, the
  others are held up to the budget (older messages published partial early, counted),
  and the gateway's peak RSS barely moves.
* The metrics/health endpoint: 500 connections that send nothing. The gateway's thread
  count stays where it was (no thread per connection), /metrics and /healthz still answer
  meanwhile, and every idle connection is closed by the gateway within its 5 s deadline.

``smppgw run`` as a process (real mosquitto, ``smppgw sim`` for a well-behaved carrier,
a raw TCP hostile SMSC for the other); figures printed.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import time
from collections import Counter
from pathlib import Path

from smppgw.bench.procs import sample
from smppgw.smpp.codec import encode
from smppgw.smpp.constants import CommandId, Status, Tag
from smppgw.smpp.pdu import DeliverSm

from reliability.evil import EvilConnection, EvilSmsc
from reliability.stack import GatewayProc, Observer, SimProc, carrier_entry
from support.broker import Mosquitto

MB = 2**20


def mo_part(seq: int, ref: int, total: int, part: int, body: bytes, source: str) -> bytes:
    """One concatenated MO part, SAR TLVs and its text in message_payload (up to 64 KB)."""
    pdu = DeliverSm(
        sequence=seq,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=source,
        destination_addr="8100",
    )
    pdu.tlvs = [
        (Tag.SAR_MSG_REF_NUM, ref.to_bytes(2, "big")),
        (Tag.SAR_TOTAL_SEGMENTS, bytes((total,))),
        (Tag.SAR_SEGMENT_SEQNUM, bytes((part,))),
        (Tag.MESSAGE_PAYLOAD, body),
    ]
    return encode(pdu)


async def flood(conn: EvilConnection, pdus: list[bytes], statuses: Counter[int]) -> None:
    """Write ``pdus`` (draining as we go) and collect their deliver_sm_resp statuses."""
    expected = sum(statuses.values()) + len(pdus)

    async def read() -> None:
        while sum(statuses.values()) < expected:
            pdu = await conn.read_pdu(30.0)
            if pdu is None:
                return
            if pdu.command_id == CommandId.DELIVER_SM_RESP:
                statuses[pdu.status] += 1

    reader = asyncio.create_task(read())
    for i, data in enumerate(pdus):
        conn.write(data)
        if i % 20 == 0:
            await conn.drain()
    await conn.drain()
    await asyncio.wait_for(reader, 60)


async def test_mo_flood_of_oversized_and_many_parts_stays_bounded(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim = SimProc(tmp_path / "sim").start()
    async with EvilSmsc() as evil:
        evil_carrier = carrier_entry(sim, name="evil", port=evil.port, prefixes=["8490"])
        gw = GatewayProc(tmp_path / "gw", mosquitto, [carrier_entry(sim), evil_carrier])
        try:
            async with Observer(mosquitto):
                await gw.start()
                conn = await asyncio.wait_for(evil.bound.get(), 10)
                await asyncio.sleep(0.5)
                before = sample(gw.pid)

                # 1,500 parts of 60 KB: 88 MB a gateway would hold for reassembly_timeout.
                big = b"x" * 60_000
                oversized: Counter[int] = Counter()
                pdus = [mo_part(conn.next_seq(), i, 2, 1, big, f"8498{i:07d}") for i in range(1500)]
                await flood(conn, pdus, oversized)
                after_big = sample(gw.pid)

                # 1,500 first parts of 1,500 octets (each under the 1,600-octet cap): 2.2 MB.
                body = b"y" * 1500
                many: Counter[int] = Counter()
                pdus = [
                    mo_part(conn.next_seq(), i, 2, 1, body, f"8497{i:07d}") for i in range(1500)
                ]
                await flood(conn, pdus, many)
                await asyncio.sleep(1.0)
                after_many = sample(gw.pid)
                refused = gw.metric("smppgw_mo_parts_refused_total", reason="too_large")
                busy = gw.metric("smppgw_mo_parts_refused_total", reason="busy")
                evicted = gw.metric("smppgw_mo_evicted_total", carrier="evil")
                assert gw.alive
        finally:
            gw.close()
            sim.stop()
    figures = {
        "rss_before_mb": round(before.rss / MB, 1),
        "peak_rss_after_oversized_mb": round(after_big.hwm / MB, 1),
        "peak_rss_after_many_mb": round(after_many.hwm / MB, 1),
        "oversized_statuses": {hex(k): v for k, v in oversized.items()},
        "many_statuses": {hex(k): v for k, v in many.items()},
        "refused_too_large": refused,
        "refused_busy": busy,
        "evicted_early": evicted,
    }
    print(f"MO flood: {figures}")
    assert oversized == {Status.ESME_RINVMSGLEN: 1500}
    assert refused == 1500
    # Every part of the second flood was either held (ROK) or asked for again later.
    assert set(many) <= {Status.ESME_ROK, Status.ESME_RX_T_APPN}
    assert many[Status.ESME_ROK] >= 1000  # ~1 MiB held, the rest evicted or refused
    assert evicted + busy > 0
    # On main the first flood alone took the peak RSS up by ~90 MB.
    assert after_many.hwm - before.hwm < 25 * MB, figures


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def test_idle_connections_cost_no_thread_and_are_closed(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim = SimProc(tmp_path / "sim").start()
    gw = GatewayProc(tmp_path / "gw", mosquitto, [carrier_entry(sim)])
    socks: list[socket.socket] = []
    try:
        await gw.start()
        port = gw.metrics_port
        assert port is not None
        await asyncio.sleep(0.5)
        threads_before = _threads(gw.pid)
        started = time.monotonic()
        for _ in range(500):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # The last handshake may have waited for a SYN retry (a full accept queue on a
        # busy machine): each connection's 5 s run from when the gateway accepted it.
        connected = time.monotonic()
        await asyncio.sleep(1.0)
        threads_during = _threads(gw.pid)
        during = [await asyncio.to_thread(_get, port, p) for p in ("/metrics", "/healthz")]
        threads_serving = _threads(gw.pid)
        closed = 0
        while time.monotonic() < connected + 5.0 + 2.0:
            await asyncio.sleep(0.25)
            closed = sum(_closed_by_peer(s) for s in socks)
            if closed == len(socks):
                break
        closed_at = time.monotonic()
        threads_after = _threads(gw.pid)
        dropped = {
            reason: gw.metric("smppgw_http_connections_dropped_total", reason=reason)
            for reason in ("over_cap", "timeout")
        }
        after = await asyncio.to_thread(_get, port, "/readyz")
    finally:
        for s in socks:
            s.close()
        gw.close()
        sim.stop()
    figures = {
        "threads_before": threads_before,
        "threads_with_500_idle": threads_during,
        "threads_while_serving": threads_serving,
        "threads_after": threads_after,
        "idle_closed_by_gateway": closed,
        "dropped": dropped,
        "seconds_to_connect": round(connected - started, 1),
        "seconds_to_close_all": round(closed_at - started, 1),
    }
    print(f"metrics endpoint vs 500 idle connections: {figures}")
    assert during[0][0] == 200 and b"smppgw_jobs_received_total" in during[0][1]
    assert during[1][0] == 200
    assert after[0] == 200
    # No thread per connection (on main: +500): at most the endpoint's 4 workers more,
    # and a little slack for the event loop's resolver pool.
    assert threads_during <= threads_before + 8, figures
    assert threads_serving <= threads_before + 8, figures
    assert closed == 500, figures
    assert dropped["over_cap"] + dropped["timeout"] >= 500
