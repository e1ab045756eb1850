"""A raw SMPP test client on asyncio streams and our codec, for the simulator's tests.

It does only what a test asks (no automatic enquire_link, no retries), so a test can send
exactly the bytes it means, malformed ones included, and see exactly what comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

from smppgw.smpp.codec import decode, encode
from smppgw.smpp.framing import FrameReader
from smppgw.smpp.pdu import BIND_CLASSES, DeliverSm, Pdu, SubmitSm


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.inbox: list[Pdu] = []
        self._seq = itertools.count(1)
        self.eof = False

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def next_seq(self) -> int:
        return next(self._seq)

    def send(self, pdu: Pdu | bytes) -> Pdu | None:
        """Write a PDU (numbered when its sequence is 0) or raw bytes."""
        if isinstance(pdu, bytes):
            self.writer.write(pdu)
            return None
        if not pdu.sequence:
            pdu.sequence = self.next_seq()
        self.writer.write(encode(pdu))
        return pdu

    async def _fill(self, timeout: float) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            self.eof = True
            raise ConnectionError("closed by the SMSC")
        self.inbox.extend(decode(f) for f in self.frames.feed(data))

    async def expect(self, match: Callable[[Pdu], bool], timeout: float = 2.0) -> Pdu:
        """The first PDU (received or still to come) that ``match``es; others stay queued."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, pdu in enumerate(self.inbox):
                if match(pdu):
                    return self.inbox.pop(i)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching PDU in {timeout} s; got {self.inbox!r}")
            await self._fill(remaining)

    async def response(self, pdu: Pdu, timeout: float = 2.0) -> Pdu:
        seq = pdu.sequence
        return await self.expect(lambda p: p.is_response and p.sequence == seq, timeout)

    async def request(self, pdu: Pdu, timeout: float = 2.0) -> Pdu:
        sent = self.send(pdu)
        assert sent is not None
        return await self.response(sent, timeout)

    async def bind(
        self, system_id: str = "test", password: str = "test", mode: str = "transceiver"
    ) -> Pdu:
        return await self.request(BIND_CLASSES[mode](system_id=system_id, password=password))

    async def submit(self, timeout: float = 2.0, **fields: Any) -> Pdu:
        return await self.request(submit_sm(**fields), timeout)

    async def deliver(self, timeout: float = 2.0, ack: bool = True) -> DeliverSm:
        pdu = await self.expect(lambda p: isinstance(p, DeliverSm), timeout)
        assert isinstance(pdu, DeliverSm)
        if ack:
            self.send(pdu.response())
        return pdu

    async def closed(self, timeout: float = 2.0) -> bool:
        """Whether the SMSC closes the connection within ``timeout`` (reading what comes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.eof:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await self._fill(remaining)
            except ConnectionError:
                return True
            except TimeoutError:
                return False
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def submit_sm(**fields: Any) -> SubmitSm:
    base: dict[str, Any] = {
        "source_addr_ton": 5,
        "source_addr": "SHOPVN",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": "84912345678",
        "short_message": b"hello",
    }
    base.update(fields)
    return SubmitSm(**base)
