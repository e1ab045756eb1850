"""The codec benchmark: how many realistic PDUs a second one core encodes and decodes.

It lives in the package (not only under ``tests/perf``) so that ``smppgw bench codec`` works
on an installed gateway, where operators compare machines before sizing a deployment. The
workload is what the gateway does most: encode a submit_sm that is one part of a UCS2
(Vietnamese) message with a UDH, and decode a delivery receipt deliver_sm. smpplib runs the
same two PDUs for comparison when it is installed (it is a test-only dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from smppgw.smpp.codec import decode, encode
from smppgw.smpp.constants import ESM_DELIVERY_RECEIPT, ESM_UDHI, MessageState, Tag
from smppgw.smpp.pdu import DeliverSm, SubmitSm

#: The issue's targets, in PDUs a second on one core.
ENCODE_TARGET = 150_000
DECODE_TARGET = 100_000

_TEXT = "Đơn hàng #1984 của bạn đã được giao thành công. Cảm ơn bạn đã mua sắm tại ShopVN!"


def sample_submit_sm() -> SubmitSm:
    """Part 1 of 2 of a UCS2 message: 8-bit-ref UDH + 134 octets, receipt requested, TLVs."""
    udh = bytes((0x05, 0x00, 0x03, 0x2A, 0x02, 0x01))
    ucs2 = _TEXT.encode("utf-16-be")[:134]
    return SubmitSm(
        sequence=123456,
        source_addr_ton=5,
        source_addr="SHOPVN",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="84912345678",
        esm_class=ESM_UDHI,
        validity_period="000001000000000R",
        registered_delivery=1,
        data_coding=8,
        short_message=udh + ucs2,
        tlvs=[(Tag.USER_MESSAGE_REFERENCE, b"\x07\xc0"), (Tag.MORE_MESSAGES_TO_SEND, b"\x01")],
    )


def sample_dlr_frame() -> bytes:
    """Wire bytes of a typical delivery receipt: the text form plus the 3.4 receipt TLVs."""
    text = (
        b"id:6A3F1C0B sub:001 dlvrd:001 submit date:2406011230 done date:2406011231 "
        b"stat:DELIVRD err:000 text:Don hang #1984 cua"
    )
    return encode(
        DeliverSm(
            sequence=98765,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="84912345678",
            dest_addr_ton=5,
            destination_addr="SHOPVN",
            esm_class=ESM_DELIVERY_RECEIPT,
            short_message=text,
            tlvs=[
                (Tag.MESSAGE_STATE, bytes((MessageState.DELIVERED,))),
                (Tag.RECEIPTED_MESSAGE_ID, b"6A3F1C0B\x00"),
            ],
        )
    )


def rate(operation: Callable[[], object], seconds: float, batch: int = 1000) -> float:
    """Calls per second of ``operation``, run in batches until ``seconds`` have passed.

    Batches keep the clock out of the measured loop; at least one batch always runs so a
    tiny ``seconds`` (the smoke test) still gives a figure.
    """
    calls = 0
    clock = time.perf_counter
    start = clock()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            operation()
        calls += batch
        now = clock()
        if now >= deadline:
            return calls / (now - start)


@dataclass(frozen=True, slots=True)
class CodecFigures:
    """PDUs a second; the smpplib figures are None when smpplib is not installed.

    ``build_encode_submit_sm`` also constructs the PDU object each time, as the gateway
    does for every part it sends; ``encode_submit_sm`` is the codec alone.
    """

    encode_submit_sm: float
    build_encode_submit_sm: float
    decode_dlr: float
    smpplib_encode_submit_sm: float | None
    smpplib_build_encode_submit_sm: float | None
    smpplib_decode_dlr: float | None
    cpu: str
    python: str
    seconds: float

    @property
    def meets_targets(self) -> bool:
        return self.encode_submit_sm >= ENCODE_TARGET and self.decode_dlr >= DECODE_TARGET


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@contextmanager
def one_core() -> Iterator[None]:
    """Pin the process to one CPU while measuring, so figures are per core and steady."""
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        yield
        return
    before = getter(0)
    try:
        setter(0, {min(before)})
    except OSError:
        yield
        return
    try:
        yield
    finally:
        setter(0, before)


@dataclass(frozen=True, slots=True)
class _Operations:
    encode: Callable[[], object]
    build_encode: Callable[[], object]
    decode: Callable[[], object]


def _our_operations(pdu: SubmitSm, dlr: bytes) -> _Operations:
    return _Operations(
        encode=lambda: encode(pdu),
        build_encode=lambda: encode(sample_submit_sm()),
        decode=lambda: decode(dlr),
    )


def _smpplib_operations(pdu: SubmitSm, dlr: bytes) -> _Operations | None:
    """smpplib's encode and decode of the same two PDUs, or None without smpplib."""
    try:
        from smpplib import smpp  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None

    class _Client:
        # smpplib's default client cannot hand out sequence numbers; parse_pdu needs one.
        sequence = 0

        def next_sequence(self) -> int:
            return 0

    client = _Client()
    fields: dict[str, Any] = {
        "source_addr_ton": pdu.source_addr_ton,
        "source_addr": pdu.source_addr,
        "dest_addr_ton": pdu.dest_addr_ton,
        "dest_addr_npi": pdu.dest_addr_npi,
        "destination_addr": pdu.destination_addr,
        "esm_class": pdu.esm_class,
        "validity_period": pdu.validity_period,
        "registered_delivery": pdu.registered_delivery,
        "data_coding": pdu.data_coding,
        "short_message": pdu.short_message,
        "user_message_reference": pdu.tlv_int(Tag.USER_MESSAGE_REFERENCE),
        "more_messages_to_send": pdu.tlv_int(Tag.MORE_MESSAGES_TO_SEND),
    }

    def build() -> Any:
        submit = smpp.make_pdu("submit_sm", client=client, **fields)
        # smpplib ignores a sequence= keyword (its property reads the client's counter).
        submit.sequence = pdu.sequence
        return submit

    submit = build()
    if submit.generate() != encode(pdu):  # pragma: no cover - would make the comparison unfair
        raise RuntimeError("smpplib encodes the sample submit_sm differently")
    parse = smpp.parse_pdu
    return _Operations(
        encode=submit.generate,
        build_encode=lambda: build().generate(),
        decode=lambda: parse(dlr, client=client),
    )


def measure(seconds: float = 2.0, *, smpplib: bool = True) -> CodecFigures:
    """Run the codec benchmark, ``seconds`` per figure, on one core."""
    pdu = sample_submit_sm()
    dlr = sample_dlr_frame()
    ours = _our_operations(pdu, dlr)
    lib = _smpplib_operations(pdu, dlr) if smpplib else None
    with one_core():
        enc = rate(ours.encode, seconds)
        build_enc = rate(ours.build_encode, seconds)
        dec = rate(ours.decode, seconds)
        lib_enc = lib_build_enc = lib_dec = None
        if lib is not None:
            # smpplib is ~10x slower: smaller batches keep its run close to ``seconds``.
            lib_enc = rate(lib.encode, seconds, batch=50)
            lib_build_enc = rate(lib.build_encode, seconds, batch=50)
            lib_dec = rate(lib.decode, seconds, batch=50)
    return CodecFigures(
        encode_submit_sm=enc,
        build_encode_submit_sm=build_enc,
        decode_dlr=dec,
        smpplib_encode_submit_sm=lib_enc,
        smpplib_build_encode_submit_sm=lib_build_enc,
        smpplib_decode_dlr=lib_dec,
        cpu=cpu_model(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        seconds=seconds,
    )


def format_table(fig: CodecFigures) -> str:
    """The figures as the small table README quotes."""

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.0f}"

    def ratio(ours: float, theirs: float | None) -> str:
        return "" if not theirs else f"{ours / theirs:.0f}x"

    def verdict(value: float, target: int | None) -> str:
        if target is None:
            return ""
        return f">= {target:,} {'ok' if value >= target else 'MISSED'}"

    figures = [
        (
            "encode submit_sm (UCS2+UDH, 2 TLVs)",
            fig.encode_submit_sm,
            fig.smpplib_encode_submit_sm,
            ENCODE_TARGET,
        ),
        (
            "build + encode the same submit_sm",
            fig.build_encode_submit_sm,
            fig.smpplib_build_encode_submit_sm,
            None,
        ),
        (
            "decode DLR deliver_sm (text + 2 TLVs)",
            fig.decode_dlr,
            fig.smpplib_decode_dlr,
            DECODE_TARGET,
        ),
    ]
    rows = [("operation (1 core)", "smppgw/s", "smpplib/s", "ratio", "target")]
    rows += [
        (label, num(ours), num(theirs), ratio(ours, theirs), verdict(ours, target))
        for label, ours, theirs, target in figures
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [f"machine: {fig.cpu}, {fig.python}, {fig.seconds:g} s per figure"]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:4], widths[1:4], strict=True)]
        cells.append(row[4].ljust(widths[4]))
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="measuring time per figure (default 2)",
    )
    parser.add_argument(
        "--no-smpplib", action="store_true", help="skip the smpplib comparison figures"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a figure misses its target (for CI)"
    )


def run(args: argparse.Namespace) -> int:
    """Print the figures; with --check, exit 1 when a target is missed (a CI gate)."""
    if args.seconds < 0:
        raise SystemExit("smppgw bench codec: --seconds must be >= 0")
    fig = measure(args.seconds, smpplib=not args.no_smpplib)
    if args.json:
        out: dict[str, Any] = asdict(fig)
        out["meets_targets"] = fig.meets_targets
        print(json.dumps(out))
    else:
        print(format_table(fig))
    return 1 if args.check and not fig.meets_targets else 0
