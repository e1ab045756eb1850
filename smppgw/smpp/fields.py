"""The mandatory parameter types of SMPP 3.4, and a PDU body's layout built from them.

A PDU class declares its mandatory parameters as dataclass fields in wire order, and the
Python type says the SMPP type (section 3.1): ``str`` is a C-Octet String, ``int`` a 1-octet
integer, ``bytes`` the ``short_message`` with its ``sm_length`` octet in front. That rule
holds for every PDU of SMPP 3.4, so the wire layout is derived from the class rather than
written twice.

:func:`layout` groups the fields into :class:`CString`, :class:`Integers` (a run of
1-octet integers packed with one ``struct`` call) and :class:`ShortMessage`; each type says
what is wrong with a value it cannot encode (:meth:`problem`). :func:`hot_ops` flattens a
layout into the tuples :mod:`smppgw.smpp.codec` loops over: small-int kinds and pre-bound
functions inline in the codec's loop save an isinstance test, a method call and two
attribute lookups per field, which keeps the codec at hundreds of thousands of PDUs a
second.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

#: Longest ``message_id`` (SMPP 3.4 section 5.2.23: C-Octet String of at most 65 octets
#: with its NUL). It is the one C-string an SMSC hands us that we keep: in the receipt
#: map, the store and the published events. A longer one is a decode error, so a hostile
#: SMSC cannot make each id cost kilobytes there. Other C-strings are only bounded by the
#: PDU length: real SMSCs overrun the spec's sizes (long alphanumeric addresses) and
#: refusing those would lose their MO and receipts.
MAX_MESSAGE_ID = 64
#: Longest ``short_message``: its length goes in one octet (longer text: message_payload).
MAX_SHORT_MESSAGE = 255


@dataclass(slots=True, frozen=True)
class CString:
    """A C-Octet String: Latin-1 octets ended by a NUL (so it cannot contain one)."""

    name: str

    def problem(self, pdu: object) -> str | None:
        """Why this field of ``pdu`` cannot be encoded, or None when it can."""
        value = getattr(pdu, self.name)
        if not isinstance(value, str):
            return f"{self.name}: expected str, got {type(value).__name__}"
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return f"{self.name}: {value!r} is not an ASCII/Latin-1 C-Octet String"
        if "\x00" in value:
            return f"{self.name}: {value!r} contains NUL, which would end the C-Octet String"
        return None


@dataclass(slots=True, frozen=True)
class Integers:
    """Consecutive 1-octet integers, packed and unpacked with one ``struct`` call."""

    names: tuple[str, ...]
    packer: struct.Struct
    getter: Callable[[Any], Any]

    @classmethod
    def of(cls, names: tuple[str, ...]) -> Integers:
        getter: Callable[[Any], Any]
        if len(names) == 1:
            only = names[0]
            getter = lambda obj: (getattr(obj, only),)  # noqa: E731 - a tuple, as attrgetter(*n)
        else:
            getter = attrgetter(*names)
        return cls(names, struct.Struct(">" + "B" * len(names)), getter)

    def problem(self, pdu: object) -> str | None:
        for name in self.names:
            value = getattr(pdu, name)
            if not isinstance(value, int) or not 0 <= value <= 255:
                return f"{name}: {value!r} is not an integer 0..255"
        return None


@dataclass(slots=True, frozen=True)
class ShortMessage:
    """``short_message`` behind its ``sm_length`` octet: at most 255 octets."""

    name: str

    def problem(self, pdu: object) -> str | None:
        value = getattr(pdu, self.name)
        if not isinstance(value, bytes | bytearray | memoryview):
            return f"{self.name}: expected bytes, got {type(value).__name__}"
        if len(value) > MAX_SHORT_MESSAGE:
            return (
                f"{self.name}: {len(value)} octets, at most {MAX_SHORT_MESSAGE}"
                " (use message_payload)"
            )
        return None


Field = CString | Integers | ShortMessage


def layout(cls: type, skip: Collection[str] = ()) -> tuple[Field, ...]:
    """The body of dataclass ``cls`` (its fields but ``skip``) as SMPP parameter types."""
    fields: list[Field] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            fields.append(Integers.of(tuple(run)))
            run.clear()

    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if kind == "int":
            run.append(f.name)
        elif kind == "str":
            close_run()
            fields.append(CString(f.name))
        elif kind == "bytes":
            close_run()
            fields.append(ShortMessage(f.name))
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported field type {kind}")
    close_run()
    return tuple(fields)


# The layout flattened for the codec's loops: (kind, getter or name, struct function, size).
CSTR, INTS, SM = 0, 1, 2
EncodeOp = tuple[int, Callable[[Any], Any], Callable[..., bytes] | None]
DecodeOp = tuple[int, str, Callable[[bytes, int], tuple[Any, ...]] | None, int]


def hot_ops(fields: tuple[Field, ...]) -> tuple[tuple[EncodeOp, ...], tuple[DecodeOp, ...]]:
    """``fields`` as the encode and decode op tuples :mod:`smppgw.smpp.codec` runs."""
    enc: list[EncodeOp] = []
    dec: list[DecodeOp] = []
    for f in fields:
        if isinstance(f, CString):
            enc.append((CSTR, attrgetter(f.name), None))
            dec.append((CSTR, f.name, None, 0))
        elif isinstance(f, Integers):
            enc.append((INTS, f.getter, f.packer.pack))
            dec.append((INTS, ",".join(f.names), f.packer.unpack_from, f.packer.size))
        else:
            enc.append((SM, attrgetter(f.name), None))
            dec.append((SM, f.name, None, 0))
    return tuple(enc), tuple(dec)
