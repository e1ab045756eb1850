"""The mandatory parameter types (smppgw.smpp.fields), each on its own, and layouts."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest

from smppgw.smpp.fields import (
    CSTR,
    INTS,
    SM,
    CString,
    Integers,
    ShortMessage,
    hot_ops,
    layout,
)
from smppgw.smpp.pdu import HEADER_FIELDS, DataSm, SubmitSm


@dataclass
class _Body:
    sequence: int = 0
    name: str = ""
    ton: int = 0
    npi: int = 0
    text: bytes = b""
    flag: int = 0


def test_layout_groups_consecutive_integers_into_one_run() -> None:
    fields = layout(_Body, skip={"sequence"})
    assert [type(f) for f in fields] == [CString, Integers, ShortMessage, Integers]
    run = fields[1]
    assert isinstance(run, Integers)
    assert run.names == ("ton", "npi") and run.packer.size == 2
    assert run.getter(_Body(ton=5, npi=1)) == (5, 1)
    single = fields[3]
    assert isinstance(single, Integers) and single.getter(_Body(flag=7)) == (7,)


def test_layout_refuses_a_type_smpp_has_no_parameter_for() -> None:
    @dataclass
    class Odd:
        ratio: float = 0.0

    with pytest.raises(TypeError, match=r"Odd\.ratio: unsupported field type float"):
        layout(Odd)


def test_submit_sm_layout_is_the_spec_order() -> None:
    kinds = [
        (type(f).__name__, getattr(f, "name", getattr(f, "names", None))) for f in SubmitSm.layout
    ]
    assert kinds[0] == ("CString", "service_type")
    assert kinds[1] == ("Integers", ("source_addr_ton", "source_addr_npi"))
    assert kinds[-2] == (
        "Integers",
        ("registered_delivery", "replace_if_present_flag", "data_coding", "sm_default_msg_id"),
    )
    assert kinds[-1] == ("ShortMessage", "short_message")
    assert not any(
        name in HEADER_FIELDS
        for _, names in kinds
        for name in (names if isinstance(names, tuple) else (names,))
    )


def test_hot_ops_mirror_the_layout() -> None:
    enc, dec = hot_ops(DataSm.layout)
    assert [op[0] for op in enc] == [op[0] for op in dec]
    assert [op[0] for op in enc] == [
        CSTR if isinstance(f, CString) else INTS if isinstance(f, Integers) else SM
        for f in DataSm.layout
    ]
    ints = next(op for op in dec if op[0] == INTS)
    assert ints[1] == "source_addr_ton,source_addr_npi" and ints[3] == 2


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("ok", None),
        (b"x", "name: expected str, got bytes"),
        ("€", "name: '€' is not an ASCII/Latin-1 C-Octet String"),
        ("a\x00b", "name: 'a\\x00b' contains NUL, which would end the C-Octet String"),
    ],
)
def test_cstring_says_what_it_cannot_encode(value: object, problem: str | None) -> None:
    assert CString("name").problem(_Body(name=value)) == problem  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ton", "problem"),
    [
        (0, None),
        (255, None),
        (256, "ton: 256 is not an integer 0..255"),
        (-1, "ton: -1 is not an integer 0..255"),
        ("1", "ton: '1' is not an integer 0..255"),
    ],
)
def test_integers_say_which_one_is_out_of_range(ton: object, problem: str | None) -> None:
    assert Integers.of(("ton", "npi")).problem(_Body(ton=ton)) == problem  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"x" * 255, None),
        (b"x" * 256, "text: 256 octets, at most 255 (use message_payload)"),
        ("hi", "text: expected bytes, got str"),
    ],
)
def test_short_message_is_at_most_255_octets(text: object, problem: str | None) -> None:
    assert ShortMessage("text").problem(_Body(text=text)) == problem  # type: ignore[arg-type]


@dataclass
class _Abc:
    a: int = 1
    b: int = 2
    c: int = 3


def test_integer_runs_pack_with_one_struct() -> None:
    run = Integers.of(("a", "b", "c"))
    assert run.packer.format == struct.Struct(">BBB").format
    assert run.packer.pack(*run.getter(_Abc())) == b"\x01\x02\x03"
