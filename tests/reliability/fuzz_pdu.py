"""Coverage-guided fuzzing of the SMPP codec with atheris (by hand, not in CI).

    .venv/bin/python tests/reliability/fuzz_pdu.py -max_total_time=300 [corpus_dir]

What counts as a crash: ``decode()`` or ``FrameReader.feed()`` raising anything but
``PduError`` (its subclasses included), a decoded PDU that ``encode()`` cannot write
back for a reason other than ``ValueError``, or a re-encoded PDU that decodes differently.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from smppgw.smpp.codec import decode, encode
    from smppgw.smpp.errors import PduError
    from smppgw.smpp.framing import FrameReader


def one_input(data: bytes) -> None:
    try:
        pdu = decode(data)
    except PduError:
        pdu = None
    if pdu is not None:
        try:
            wire = encode(pdu)
        except ValueError:
            wire = None
        if wire is not None:
            again = decode(wire)
            assert again == pdu, (pdu, again)
    reader = FrameReader(4096)
    try:
        for cut in range(0, len(data), 7):
            reader.feed(data[cut : cut + 7])
    except PduError:
        pass


def seed_corpus(directory: str) -> None:
    """Start from real PDUs (receipts, MO, responses, binds) rather than from nothing."""
    import os
    from datetime import datetime

    from smppgw.smpp.constants import Tag
    from smppgw.smpp.pdu import (
        BindTransceiverResp,
        DataSm,
        DeliverSm,
        EnquireLink,
        GenericNack,
        SubmitSm,
        SubmitSmResp,
    )
    from smppgw.smpp.receipt import format_receipt_text

    now = datetime(2026, 1, 1)
    receipt = DeliverSm(
        sequence=7,
        esm_class=4,
        source_addr="84981234567",
        short_message=format_receipt_text("1A2B3C", "DELIVRD", now, now),
    )
    receipt.tlvs = [(Tag.RECEIPTED_MESSAGE_ID, b"1A2B3C\0"), (Tag.MESSAGE_STATE, b"\x02")]
    udh = DeliverSm(
        sequence=8,
        esm_class=0x40,
        data_coding=8,
        short_message=b"\x05\x00\x03\x01\x02\x01" + "xin chào".encode("utf-16-be"),
    )
    seeds = [
        receipt,
        udh,
        SubmitSm(sequence=1, destination_addr="84981234567", short_message=b"hello"),
        SubmitSmResp(sequence=1, message_id="ABC"),
        BindTransceiverResp(sequence=2, system_id="smsc"),
        EnquireLink(sequence=3),
        GenericNack(sequence=4, status=3),
        DataSm(sequence=5, destination_addr="8100"),
    ]
    os.makedirs(directory, exist_ok=True)
    if not os.listdir(directory):
        for i, pdu in enumerate(seeds):
            with open(os.path.join(directory, f"seed-{i}"), "wb") as fh:
                fh.write(encode(pdu))


if __name__ == "__main__":
    dirs = [a for a in sys.argv[1:] if not a.startswith("-")]
    if dirs:
        seed_corpus(dirs[0])
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
