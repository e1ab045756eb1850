"""SMPP framing: the 16-octet header and cutting a byte stream into whole PDUs.

Every PDU starts with ``command_length, command_id, command_status, sequence_number``
(four big-endian 32-bit integers, SMPP 3.4 section 3.2). :class:`FrameReader` cuts a TCP
stream into PDUs by ``command_length`` alone; what is inside is the codec's business
(:mod:`smppgw.smpp.codec`).
"""

from __future__ import annotations

import struct

from smppgw.smpp.constants import Status
from smppgw.smpp.errors import FrameError

HEADER = struct.Struct(">IIII")
HEADER_SIZE = 16
DEFAULT_MAX_PDU_LENGTH = 64 * 1024


def peek_header(frame: bytes | bytearray) -> tuple[int, int, int, int] | None:
    """(length, command_id, status, sequence) when at least a header is there."""
    if len(frame) < HEADER_SIZE:
        return None
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    return length, command_id, status, sequence


class FrameReader:
    """Incremental framer: feed it whatever the socket gave, get whole PDUs back.

    Copes with PDUs split across reads and many PDUs in one read; refuses absurd
    command_length values before buffering them, so a hostile peer cannot make it hold
    more than ``max_length`` octets.
    """

    __slots__ = ("_buf", "max_length")

    def __init__(self, max_length: int = DEFAULT_MAX_PDU_LENGTH) -> None:
        self._buf = bytearray()
        self.max_length = max_length

    @property
    def buffered(self) -> int:
        """Octets of an incomplete PDU held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        size = len(buf)
        while size - pos >= 4:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length < HEADER_SIZE or length > self.max_length:
                header = peek_header(buf[pos : pos + HEADER_SIZE])
                command_id = header[1] if header else None
                sequence = header[3] if header else None
                buf.clear()
                raise FrameError(
                    f"command_length {length} outside 16..{self.max_length}",
                    command_id=command_id,
                    sequence=sequence,
                    status=Status.ESME_RINVCMDLEN,
                    frames=frames,
                )
            if size - pos < length:
                break
            frames.append(bytes(buf[pos : pos + length]))
            pos += length
        if pos:
            del buf[:pos]
        return frames
