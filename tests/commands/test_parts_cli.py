"""``smppgw parts``: what a text costs, as the gateway would send it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from smppgw.cli import main
from smppgw.smpp.constants import Tag
from smppgw.smpp.text import split

ROOT = Path(__file__).resolve().parents[2]


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert main(["parts", "--json", *args]) == 0
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_json_lines_for_udh8_gsm(capsys: pytest.CaptureFixture[str]) -> None:
    text = "a" * 152 + "€" + "b" * 10
    rows = run_json(capsys, text)
    assert len(rows) == 2
    assert rows[0] == {
        "data_coding": 0,
        "esm_class": 0x40,
        "udh": "050003000201",
        "short_message": "050003000201" + "61" * 152,
        "sar": None,
        "message_payload": None,
    }
    assert rows[1]["short_message"] == "050003000202" + "1b65" + "62" * 10
    # exactly what the gateway sends
    assert [bytes.fromhex(str(r["short_message"])) for r in rows] == [
        p.short_message for p in split(text)
    ]


def test_json_lines_for_sar_ucs2(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "--concat", "sar", "ж" * 66 + "😀" + "x" * 10)
    assert [r["sar"] for r in rows] == [
        {"ref": 0, "total": 2, "seq": 1},
        {"ref": 0, "total": 2, "seq": 2},
    ]
    assert all(r["data_coding"] == 8 and r["udh"] is None and r["esm_class"] == 0 for r in rows)
    assert str(rows[1]["short_message"]).startswith("d83dde00")


def test_json_for_payload_and_forced_coding(capsys: pytest.CaptureFixture[str]) -> None:
    (row,) = run_json(capsys, "--concat", "payload", "--coding", "latin1", "é" * 200)
    assert row["data_coding"] == 3 and row["short_message"] == ""
    assert row["message_payload"] == "e9" * 200
    (part,) = split("é" * 200, coding="latin1", concat="payload")
    assert part.tlvs == ((Tag.MESSAGE_PAYLOAD, bytes.fromhex(str(row["message_payload"]))),)


def test_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parts", "--concat", "udh16", "a" * 200]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "coding: gsm (data_coding 0)",
        "characters: 200",
        "parts: 2 (concat udh16)",
        "  part 1: 152 septets + 7-octet UDH",
        "  part 2: 48 septets + 7-octet UDH",
    ]
    assert main(["parts", "Đơn hàng"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "coding: ucs2 (data_coding 8)",
        "characters: 8",
        "parts: 1",
        "  part 1: 16 octets",
    ]
    assert main(["parts", "--concat", "payload", "a" * 400]) == 0
    assert "parts: 3 (one message_payload TLV of 400 septets)" in capsys.readouterr().out


def test_errors_go_to_stderr_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parts", "--coding", "gsm", "Привет"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "'П' (U+041F) cannot be encoded in GSM" in captured.err
    assert main(["parts", "--max-parts", "3", "x" * 1000]) == 2
    assert "needs 7 parts, max 3" in capsys.readouterr().err


def test_module_entry_point_via_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "smppgw", "parts", "--json", "--concat", "udh16", "x" * 170],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["udh"] for r in rows] == ["06080400000201", "06080400000202"]
    bad = subprocess.run(
        [sys.executable, "-m", "smppgw", "parts", "--coding", "latin1", "€"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "U+20AC" in bad.stderr and bad.stdout == ""


def test_marketing_texts_are_counted_with_their_label_and_footer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """What ``category: marketing`` sends: 158 GSM characters fit one part alone, not with
    ``[QC] `` first (7 septets: ``[`` and ``]`` are escapes)."""
    text = "x" * 158
    assert main(["parts", text]) == 0
    assert "parts: 1\n" in capsys.readouterr().out
    assert main(["parts", "--category", "marketing", text]) == 0
    out = capsys.readouterr().out
    assert out.startswith("text sent: '[QC] xxx") and "parts: 2 (concat udh8)" in out
    config = tmp_path / "gw.yaml"
    config.write_text(
        "carriers: [{name: a, host: h, port: 1, system_id: s, password: p}]\n"
        'consent: {marketing_prefix: "", marketing_footer: " STOP to 8079"}\n'
    )
    assert main(["parts", "--category", "marketing", "--config", str(config), "Sale"]) == 0
    assert capsys.readouterr().out.startswith("text sent: 'Sale STOP to 8079'\n")
    config.write_text("consent: {timezone: Mars/Olympus}\n")
    assert main(["parts", "--category", "marketing", "--config", str(config), "Sale"]) == 2
    assert "consent.timezone: unknown IANA time zone" in capsys.readouterr().err
