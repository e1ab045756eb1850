"""``smppgw parts TEXT``: what a message will cost before it is sent.

Shows the coding the gateway would choose, how many SMS parts the text takes and each
part's size, using the very function the gateway sends with (:func:`smppgw.smpp.text.split`),
so what it prints is what the carrier bills. ``--json`` prints each part's PDU fields, one
JSON object per line, for scripts and for comparing with a carrier's PDU log.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata

from smppgw.config import ConfigError, ConsentConfig
from smppgw.config.loader import load_config
from smppgw.pipeline.marketing import decorate
from smppgw.smpp.constants import Tag
from smppgw.smpp.text import DC_GSM, Coding, Concat, Part, TextError, split

_CODING_NAMES = {0x00: "gsm", 0x03: "latin1", 0x08: "ucs2"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--coding",
        choices=[c.value for c in Coding],
        default=Coding.AUTO.value,
        help="text coding (default: auto = GSM 03.38 when possible, else UCS2)",
    )
    parser.add_argument(
        "--concat",
        choices=[c.value for c in Concat],
        default=Concat.UDH8.value,
        help="how long texts are concatenated (default: udh8)",
    )
    parser.add_argument(
        "--max-parts", type=int, default=10, metavar="N", help="refuse above N parts (default 10)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per part")
    parser.add_argument(
        "--category",
        choices=["transactional", "marketing"],
        default="transactional",
        help="marketing: with the consent label and footer, as the gateway sends it",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="take consent.marketing_prefix / marketing_footer from this config "
        "(default: the defaults, prefix '[QC] ')",
    )
    parser.add_argument("text", metavar="TEXT", help="the message text ('-' reads stdin)")


def _payload(part: Part) -> bytes | None:
    for tag, value in part.tlvs:
        if tag == Tag.MESSAGE_PAYLOAD:
            return value
    return None


def _as_json(part: Part) -> str:
    payload = _payload(part)
    sar = part.sar
    return json.dumps(
        {
            "data_coding": part.data_coding,
            "esm_class": part.esm_class,
            "udh": part.udh.hex() if part.udh is not None else None,
            "short_message": part.short_message.hex(),
            "sar": {"ref": sar[0], "total": sar[1], "seq": sar[2]} if sar else None,
            "message_payload": payload.hex() if payload is not None else None,
        }
    )


def _describe(text: str, parts: list[Part], concat: Concat, billed: int) -> list[str]:
    dc = parts[0].data_coding
    unit = "septets" if dc == DC_GSM else "octets"
    lines = [
        f"coding: {_CODING_NAMES.get(dc, '?')} (data_coding {dc})",
        f"characters: {len(unicodedata.normalize('NFC', text))}",
    ]
    if len(parts) == 1 and (payload := _payload(parts[0])) is not None:
        lines.append(f"parts: {billed} (one message_payload TLV of {len(payload)} {unit})")
        return lines
    lines.append(f"parts: {len(parts)}" + (f" (concat {concat.value})" if len(parts) > 1 else ""))
    for seq, part in enumerate(parts, 1):
        size = len(part.short_message) - (len(part.udh) if part.udh else 0)
        extra = f" + {len(part.udh)}-octet UDH" if part.udh else ""
        if part.sar:
            extra = f" + SAR ref {part.sar[0]}, {part.sar[2]}/{part.sar[1]}"
        lines.append(f"  part {seq}: {size} {unit}{extra}")
    return lines


def _consent(path: str | None) -> ConsentConfig:
    return ConsentConfig() if path is None else load_config(path).consent


def run(args: argparse.Namespace) -> int:
    text: str = sys.stdin.read() if args.text == "-" else args.text
    sent = None
    if args.category == "marketing":
        try:
            consent = _consent(args.config)
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"{args.config}: {problem}", file=sys.stderr)
            return 2
        text = decorate(
            unicodedata.normalize("NFC", text), consent.marketing_prefix, consent.marketing_footer
        )
        sent = text
    concat = Concat(args.concat)
    try:
        parts = split(text, coding=args.coding, concat=concat, max_parts=args.max_parts)
        billed = len(parts)
        if concat is Concat.PAYLOAD:
            billed = len(split(text, coding=args.coding, concat="udh8", max_parts=255))
    except TextError as exc:
        print(f"smppgw parts: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for part in parts:
            print(_as_json(part))
    else:
        lines = _describe(text, parts, concat, billed)
        if sent is not None:
            lines.insert(0, f"text sent: {sent!r}")
        print("\n".join(lines))
    return 0
