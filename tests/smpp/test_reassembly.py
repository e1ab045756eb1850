"""Concatenated MO reassembly (smppgw.smpp.text.reassembly): joining, expiry, bounds."""

from __future__ import annotations

import pytest

from smppgw.smpp.constants import ESM_UDHI
from smppgw.smpp.text import (
    MISSING_PART,
    MoPart,
    MoRefused,
    Reassembler,
    decode_mo,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reassembler_joins_out_of_order_and_ignores_duplicates() -> None:
    r = Reassembler()
    key = ("84901", "8088")
    assert r.add(key, MoPart("c", (9, 3, 3))) is None
    assert r.add(key, MoPart("a", (9, 3, 1))) is None
    assert r.add(key, MoPart("a", (9, 3, 1))) is None
    assert r.add(key, MoPart("b", (9, 3, 2))) == "abc"
    assert len(r) == 0


def test_reassembler_keeps_keys_and_refs_apart() -> None:
    r = Reassembler()
    assert r.add(("x", "1"), MoPart("x1", (1, 2, 1))) is None
    assert r.add(("y", "1"), MoPart("y2", (1, 2, 2))) is None
    assert r.add(("x", "1"), MoPart("z2", (2, 2, 2))) is None
    assert r.add(("x", "1"), MoPart("x2", (1, 2, 2))) == "x1x2"
    assert r.add(("plain", "1"), MoPart("single", None)) == "single"
    assert len(r) == 2


def test_reassembler_rejoins_a_surrogate_pair_split_by_the_handset() -> None:
    data = "ab😀".encode("utf-16-be")
    r = Reassembler()
    first = decode_mo(b"\x05\x00\x03\x01\x02\x01" + data[:6], 8, ESM_UDHI, [])
    second = decode_mo(b"\x05\x00\x03\x01\x02\x02" + data[6:], 8, ESM_UDHI, [])
    assert r.add(("k", "k"), first) is None
    assert r.add(("k", "k"), second) == "ab😀"


def test_reassembler_expires_partial_messages_with_gap_marks() -> None:
    clock = FakeClock()
    r = Reassembler(timeout=60, clock=clock)
    r.add(("a", "1"), MoPart("one ", (5, 4, 1)))
    r.add(("a", "1"), MoPart("three", (5, 4, 3)))
    clock.now += 30
    r.add(("b", "1"), MoPart("later", (1, 2, 1)))
    assert r.expire() == []
    clock.now += 31
    assert r.expire() == [(("a", "1"), f"one {MISSING_PART}three{MISSING_PART}")]
    assert len(r) == 1
    clock.now += 30
    assert r.expire() == [(("b", "1"), f"later{MISSING_PART}")]
    assert len(r) == 0


def test_reassembler_bounds_pending_messages() -> None:
    r = Reassembler(max_pending=2)
    for n in range(4):
        r.add((str(n), "x"), MoPart(f"p{n}", (n, 2, 1)))
    assert len(r) == 2
    assert r.expire() == [(("0", "x"), "p0…"), (("1", "x"), "p1…")]


def test_reassembler_refuses_a_part_larger_than_a_part_can_be() -> None:
    r = Reassembler(max_part=100)
    mo = decode_mo(b"", 0, 0, [(0x020C, b"\x00\x07"), (0x020E, b"\x02"), (0x020F, b"\x01"),
                              (0x0424, b"x" * 101)])  # fmt: skip
    assert mo.size == 101 and mo.concat == (7, 2, 1)
    with pytest.raises(MoRefused) as refused:
        r.add(("a", "1"), mo)
    assert refused.value.reason == "too_large"
    assert str(refused.value) == "MO part of 101 octets, at most 100 in a part"
    assert len(r) == 0 and r.bytes == 0
    # A message that is not concatenated is not held, so its size is not the reassembler's.
    assert r.add(("a", "1"), MoPart("y" * 500, None, 500)) == "y" * 500


def test_reassembler_bounds_octets_held_evicting_the_oldest_then_refusing() -> None:
    r = Reassembler(max_part=100, max_bytes=250)
    for n in range(3):  # 3 x 80 = 240 octets pending
        assert r.add((str(n), "x"), MoPart("p" * 80, (n, 2, 1), 80)) is None
    assert r.bytes == 240 and r.evicted == 0
    # One more: the oldest message is evicted (published partial by expire), not dropped.
    assert r.add(("3", "x"), MoPart("q" * 80, (3, 2, 1), 80)) is None
    assert (len(r), r.evicted, r.has_evicted) == (3, 1, True)
    # Evicted texts hold room until taken: 2 more evictions fit there, the next does not.
    for n in range(4, 6):
        r.add((str(n), "x"), MoPart("r" * 80, (n, 2, 1), 80))
    assert r.evicted == 3 and r.bytes == 240 + 240
    with pytest.raises(MoRefused) as refused:
        r.add(("7", "x"), MoPart("s" * 80, (7, 2, 1), 80))
    assert refused.value.reason == "busy"
    assert r.bytes <= 2 * r.max_bytes
    out = r.expire()  # the caller takes the evicted ones: room again
    assert [key for key, _text in out] == [("0", "x"), ("1", "x"), ("2", "x")]
    assert out[0][1] == "p" * 80 + MISSING_PART
    assert r.bytes == 240
    assert r.add(("7", "x"), MoPart("s" * 80, (7, 2, 1), 80)) is None


def test_reassembler_counts_a_repeated_part_once_and_frees_a_completed_message() -> None:
    r = Reassembler(max_part=100, max_bytes=1000)
    r.add(("a", "1"), MoPart("x" * 90, (1, 2, 1), 90))
    r.add(("a", "1"), MoPart("x" * 90, (1, 2, 1), 90))  # the SMSC delivered it again
    assert r.bytes == 90
    assert r.add(("a", "1"), MoPart("y" * 10, (1, 2, 2), 10)) == "x" * 90 + "y" * 10
    assert r.bytes == 0
