"""Throughput of the SMSC simulator: submit_sm/s with receipts, on one core.

Starts ``smppgw sim`` as a subprocess (its own process, so its own core), binds one
transceiver with a raw asyncio client built on our codec, keeps ``--window`` submit_sm
outstanding with registered_delivery=1, answers every receipt, and prints submits/s,
receipts/s and the simulator's CPU time per message.

    .venv/bin/python tests/perf/bench_sim.py -n 200000 --window 100

The client is as lean as the codec allows (submit PDUs pre-encoded, sequence patched in
place, responses classified from the header only) so that the figure is the simulator's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

from smppgw.smpp.codec import decode, encode
from smppgw.smpp.constants import CommandId
from smppgw.smpp.framing import FrameReader
from smppgw.smpp.pdu import BindTransceiver, SubmitSm

HEADER = struct.Struct(">IIII")
SEQ = struct.Struct(">I")
SUBMIT_RESP = CommandId.SUBMIT_SM_RESP
DELIVER_SM = CommandId.DELIVER_SM
DELIVER_RESP_LEN = 17


class BenchClient(asyncio.Protocol):
    def __init__(self, total: int, window: int) -> None:
        self.total = total
        self.window = window
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.sent = 0
        self.answered = 0
        self.errors = 0
        self.receipts = 0
        self.bound = asyncio.get_running_loop().create_future()
        self.submits_done = asyncio.get_running_loop().create_future()
        self.receipts_done = asyncio.get_running_loop().create_future()
        template = encode(
            SubmitSm(
                sequence=0,
                source_addr_ton=5,
                source_addr="SHOPVN",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="84912345678",
                registered_delivery=1,
                short_message=b"Your OTP is 123456. Do not share it.",
            )
        )
        self.template = bytearray(template)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def submits(self, count: int) -> bytes:
        out = bytearray()
        template = self.template
        for _ in range(count):
            self.sent += 1
            SEQ.pack_into(template, 12, self.sent + 1)
            out += template
        return bytes(out)

    def data_received(self, data: bytes) -> None:
        out: list[bytes] = []
        for frame in self.reader.feed(data):
            _, command_id, status, seq = HEADER.unpack_from(frame)
            if command_id == SUBMIT_RESP:
                self.answered += 1
                if status:
                    self.errors += 1
            elif command_id == DELIVER_SM:
                self.receipts += 1
                out.append(HEADER.pack(DELIVER_RESP_LEN, 0x80000005, 0, seq) + b"\x00")
            elif command_id == CommandId.BIND_TRANSCEIVER_RESP:
                resp = decode(frame)
                if resp.status:
                    self.bound.set_exception(RuntimeError(f"bind failed: {resp.status}"))
                else:
                    self.bound.set_result(None)
            elif command_id == CommandId.ENQUIRE_LINK:
                out.append(HEADER.pack(16, 0x80000015, 0, seq))
        if self.bound.done() and not self.bound.exception():
            room = min(self.window - (self.sent - self.answered), self.total - self.sent)
            if room > 0:
                out.append(self.submits(room))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if self.answered >= self.total and not self.submits_done.done():
            self.submits_done.set_result(time.perf_counter())
        if (
            self.answered >= self.total
            and self.receipts >= self.total - self.errors
            and not self.receipts_done.done()
        ):
            self.receipts_done.set_result(time.perf_counter())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def run(args: argparse.Namespace) -> int:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smppgw",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--accounts",
            "bench:bench",
            "--enquire-link",
            "0",
            *args.sim_args.split(),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on ([\d.]+):(\d+)", line)
        if not match:
            print(f"unexpected sim output: {line!r}", file=sys.stderr)
            return 1
        host, port = match.group(1), int(match.group(2))
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_connection(
            lambda: BenchClient(args.n, args.window), host, port
        )
        transport.write(encode(BindTransceiver(sequence=1, system_id="bench", password="bench")))
        await client.bound
        cpu0 = cpu_seconds(proc.pid)
        start = time.perf_counter()
        transport.write(client.submits(min(args.window, args.n)))
        submits_end = await asyncio.wait_for(client.submits_done, args.timeout)
        receipts_end = await asyncio.wait_for(client.receipts_done, args.timeout)
        cpu = cpu_seconds(proc.pid) - cpu0
        transport.close()
        elapsed = receipts_end - start
        print(
            f"sim: {args.n} submit_sm (window {args.window}, registered_delivery=1): "
            f"{args.n / (submits_end - start):,.0f} submits/s, "
            f"{client.receipts / elapsed:,.0f} receipts/s over {elapsed:.2f} s; "
            f"errors {client.errors}; sim CPU {cpu:.2f} s "
            f"({cpu / elapsed * 100:.0f}% of one core, {cpu / args.n * 1e6:.1f} us/message)"
        )
        return 0
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="submit_sm to send")
    parser.add_argument("--window", type=int, default=100, help="outstanding submit_sm")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--sim-args", default="", help="extra smppgw sim flags, e.g. '--receipt-delay 0.5'"
    )
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(args))
    return uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
