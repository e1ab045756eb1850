"""A malicious SMSC: a raw asyncio TCP server that accepts the gateway's bind and then
sends whatever a test tells it to (garbage, absurd lengths, PDUs that never finish,
floods of deliver_sm, mutated receipts).

It speaks just enough SMPP to get a bind up and to ask "are you still there?" (an
enquire_link), so a test can tell whether the gateway closed the connection, answered,
or hung.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Awaitable, Callable

from smppgw.smpp.codec import decode, encode
from smppgw.smpp.constants import CommandId, Tag
from smppgw.smpp.errors import FrameError, PduError
from smppgw.smpp.framing import FrameReader
from smppgw.smpp.pdu import (
    BIND_CLASSES,
    BindTransceiverResp,
    BindTransmitterResp,
    DeliverSm,
    EnquireLink,
    Pdu,
)
from smppgw.smpp.receipt import format_receipt_text

_BIND_RESP = {
    CommandId.BIND_TRANSCEIVER: BindTransceiverResp,
    CommandId.BIND_TRANSMITTER: BindTransmitterResp,
}


class EvilConnection:
    """One accepted connection, bound; what the gateway sends back is decoded as it comes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._frames = FrameReader(1 << 20)
        self._pdus: list[Pdu] = []
        self.seq = 0x100000
        self.eof = False

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def read_pdu(self, timeout: float) -> Pdu | None:
        """The next PDU from the gateway; None on EOF or timeout (``eof`` tells which)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._pdus:
            remaining = deadline - loop.time()
            if remaining <= 0 or self.eof:
                return None
            try:
                data = await asyncio.wait_for(self.reader.read(65536), remaining)
            except TimeoutError:
                return None
            except ConnectionError:
                data = b""
            if not data:
                self.eof = True
                return None
            try:
                frames = self._frames.feed(data)
            except FrameError:
                self.eof = True
                return None
            for frame in frames:
                with contextlib.suppress(PduError):
                    self._pdus.append(decode(frame, 1 << 20))
        return self._pdus.pop(0)

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def probe(self, timeout: float, attempts: int = 2) -> str:
        """Send an enquire_link: "alive" if answered, "closed" if the gateway closed the
        connection, "hung" if neither happened within ``timeout``, ``attempts`` times (the
        first enquire_link may be swallowed as the tail of a PDU an attack left unfinished)."""
        for _ in range(attempts):
            state = await self._probe_once(timeout)
            if state != "hung":
                return state
        return "hung"

    async def _probe_once(self, timeout: float) -> str:
        seq = self.next_seq()
        self.write(encode(EnquireLink(sequence=seq)))
        await self.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            pdu = await self.read_pdu(max(0.0, deadline - loop.time()))
            if pdu is None:
                return "closed" if self.eof else "hung"
            if pdu.command_id == CommandId.ENQUIRE_LINK_RESP and pdu.sequence == seq:
                return "alive"
            if pdu.command_id == CommandId.ENQUIRE_LINK:
                self.write(encode(pdu.response()))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


Attack = Callable[[EvilConnection], Awaitable[None]]


class EvilSmsc:
    """Accepts binds (any password) and hands each bound connection to ``attack``."""

    def __init__(self, attack: Attack | None = None) -> None:
        self.attack = attack
        self.port = 0
        self.connections: list[EvilConnection] = []
        self.bound = asyncio.Queue[EvilConnection]()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> EvilSmsc:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.connections:
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = EvilConnection(reader, writer)
        self.connections.append(conn)
        try:
            await self.serve(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)

    async def serve(self, conn: EvilConnection) -> None:
        """One connection: accept the bind, then run the attack (a subclass may do
        anything else, a hostile bind included)."""
        bind = await conn.read_pdu(5.0)
        if bind is None or bind.command_id not in BIND_CLASSES_BY_ID:
            conn.close()
            return
        resp_cls = _BIND_RESP.get(bind.command_id, BindTransceiverResp)
        conn.write(encode(resp_cls(sequence=bind.sequence, system_id="evil")))
        await conn.drain()
        await self.bound.put(conn)
        if self.attack is not None:
            await self.attack(conn)


BIND_CLASSES_BY_ID = {cls.command_id for cls in BIND_CLASSES.values()}


# ----------------------------------------------------------------------------- payloads


def header(length: int, command_id: int, status: int = 0, sequence: int = 1) -> bytes:
    return struct.pack(">IIII", length, command_id, status, sequence)


def mo(seq: int, text: str, source: str = "84981234567") -> bytes:
    return encode(
        DeliverSm(
            sequence=seq,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr=source,
            dest_addr_ton=0,
            dest_addr_npi=0,
            destination_addr="8100",
            short_message=text.encode("ascii"),
        )
    )


def receipt(seq: int, message_id: str, state: str = "DELIVRD") -> bytes:
    from datetime import datetime

    now = datetime(2026, 1, 1, 12, 0)
    pdu = DeliverSm(
        sequence=seq,
        source_addr="84981234567",
        destination_addr="SHOPVN",
        esm_class=0x04,
        short_message=format_receipt_text(message_id, state, now, now),
    )
    pdu.tlvs = [
        (Tag.RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),
        (Tag.MESSAGE_STATE, b"\x02"),
    ]
    return encode(pdu)


def mutate(data: bytes, rng: random.Random, rounds: int = 3) -> bytes:
    """Flip, drop, insert and overwrite octets; sometimes rewrite the length field."""
    buf = bytearray(data)
    for _ in range(rounds):
        op = rng.randrange(6)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and len(buf) > 1:
            i = rng.randrange(len(buf))
            del buf[i : i + rng.randrange(1, 8)]
        elif op == 2:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randrange(1, 8))
        elif op == 3 and len(buf) > 16:
            i = rng.randrange(16, len(buf))
            buf[i] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x40, 0x04))
        elif op == 4 and len(buf) >= 4:
            buf[0:4] = struct.pack(">I", len(buf))  # keep it framable
        elif op == 5 and len(buf) >= 16:
            buf[4:8] = struct.pack(">I", rng.choice(list(CommandId)))
    if len(buf) >= 4 and rng.random() < 0.7:
        buf[0:4] = struct.pack(">I", len(buf))
    return bytes(buf)
