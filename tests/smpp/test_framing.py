"""FrameReader: TCP hands us arbitrary slices of the stream; whole PDUs must come out."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smppgw.smpp.codec import decode, encode
from smppgw.smpp.constants import Status, Tag
from smppgw.smpp.errors import FrameError
from smppgw.smpp.framing import DEFAULT_MAX_PDU_LENGTH, FrameReader
from smppgw.smpp.pdu import DeliverSm, EnquireLink, Pdu, SubmitSm, SubmitSmResp

PDUS: list[Pdu] = [
    EnquireLink(sequence=1),
    SubmitSm(
        sequence=2,
        source_addr="SHOPVN",
        destination_addr="84912345678",
        data_coding=8,
        short_message="Đơn hàng đã được giao".encode("utf-16-be"),
        tlvs=[(Tag.USER_MESSAGE_REFERENCE, b"\x00\x07"), (0x1501, b"vendor")],
    ),
    DeliverSm(
        sequence=3,
        esm_class=0x04,
        short_message=b"id:1 stat:DELIVRD",
        tlvs=[(Tag.RECEIPTED_MESSAGE_ID, b"1\x00"), (Tag.MESSAGE_STATE, b"\x02")],
    ),
    SubmitSmResp(sequence=4, status=Status.ESME_RTHROTTLED),
]
STREAM = b"".join(encode(p) for p in PDUS)
FRAMES = [encode(p) for p in PDUS]


def test_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        reader = FrameReader()
        got = reader.feed(STREAM[:cut])
        got += reader.feed(STREAM[cut:])
        assert got == FRAMES, cut
        assert reader.buffered == 0


def test_split_at_every_pair_of_boundaries_inside_one_pdu() -> None:
    data = FRAMES[1]
    for a in range(len(data) + 1):
        for b in range(a, len(data) + 1):
            reader = FrameReader()
            got = reader.feed(data[:a]) + reader.feed(data[a:b])
            assert got == ([data] if b == len(data) else []), (a, b)
            assert reader.buffered == b if b < len(data) else reader.buffered == 0
            got += reader.feed(data[b:])
            assert got == [data]


def test_one_byte_at_a_time() -> None:
    reader = FrameReader()
    got: list[bytes] = []
    for i in range(len(STREAM)):
        got += reader.feed(STREAM[i : i + 1])
        assert reader.buffered < DEFAULT_MAX_PDU_LENGTH
    assert got == FRAMES
    assert [decode(f) for f in got] == PDUS


def test_many_pdus_in_one_read() -> None:
    many = [EnquireLink(sequence=i) for i in range(1, 5001)]
    reader = FrameReader()
    frames = reader.feed(b"".join(encode(p) for p in many))
    assert [decode(f) for f in frames] == many
    assert reader.buffered == 0


def test_many_pdus_and_a_partial_one_in_one_read() -> None:
    reader = FrameReader()
    assert reader.feed(STREAM + FRAMES[1][:20]) == FRAMES
    assert reader.buffered == 20
    assert reader.feed(FRAMES[1][20:]) == [FRAMES[1]]
    assert reader.buffered == 0


def test_empty_feed_and_bytearray_or_memoryview_input() -> None:
    reader = FrameReader()
    assert reader.feed(b"") == []
    assert reader.feed(bytearray(STREAM[:7])) == []
    assert reader.feed(memoryview(STREAM)[7:]) == FRAMES  # type: ignore[arg-type]
    assert all(type(f) is bytes for f in FRAMES)


@pytest.mark.parametrize("length", [0, 1, 15, DEFAULT_MAX_PDU_LENGTH + 1, 0xFFFFFFFF])
def test_absurd_length_raises_on_its_first_four_octets_without_buffering(length: int) -> None:
    reader = FrameReader()
    with pytest.raises(FrameError) as info:
        reader.feed(struct.pack(">I", length))  # nothing else has arrived yet
    assert info.value.status == Status.ESME_RINVCMDLEN
    assert str(length) in info.value.reason
    assert reader.buffered == 0


def test_absurd_length_with_header_names_command_and_sequence() -> None:
    reader = FrameReader()
    with pytest.raises(FrameError) as info:
        reader.feed(struct.pack(">IIII", 10_000_000, 0x04, 0, 77) + b"x" * 100)
    assert (info.value.command_id, info.value.sequence) == (0x04, 77)
    assert reader.buffered == 0


def test_frames_before_a_broken_length_travel_on_the_error() -> None:
    reader = FrameReader()
    with pytest.raises(FrameError) as info:
        reader.feed(STREAM + struct.pack(">I", 3) + b"junk")
    assert info.value.frames == FRAMES
    reader2 = FrameReader()
    with pytest.raises(FrameError) as info2:
        reader2.feed(struct.pack(">I", 3))
    assert info2.value.frames == []


def test_configurable_max_length() -> None:
    big = encode(SubmitSm(sequence=1, tlvs=[(Tag.MESSAGE_PAYLOAD, b"x" * 1000)]))
    assert FrameReader(max_length=len(big)).feed(big) == [big]
    reader = FrameReader(max_length=len(big) - 1)
    with pytest.raises(FrameError):
        reader.feed(big[:4])
    assert reader.max_length == len(big) - 1


@st.composite
def chunked(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """A random run of PDUs and a random way TCP might slice it."""
    frames = draw(st.lists(st.sampled_from(FRAMES), min_size=1, max_size=12))
    stream = b"".join(frames)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    bounds = [0, *cuts, len(stream)]
    return frames, [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(chunked())
def test_random_slicing_gives_the_same_frames(case: tuple[list[bytes], list[bytes]]) -> None:
    frames, chunks = case
    reader = FrameReader()
    got: list[bytes] = []
    for chunk in chunks:
        got += reader.feed(chunk)
        assert reader.buffered <= max(len(f) for f in frames)
    assert got == frames
    assert reader.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_garbage_only_yields_frames_or_frame_errors(chunks: list[bytes]) -> None:
    reader = FrameReader(max_length=1024)
    for chunk in chunks:
        try:
            frames = reader.feed(chunk)
        except FrameError:
            assert reader.buffered == 0
            return
        for f in frames:
            assert 16 <= len(f) <= 1024
            assert struct.unpack_from(">I", f)[0] == len(f)
        assert reader.buffered < 1024
