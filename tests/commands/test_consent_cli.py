"""``smppgw consent``: reading a Do-Not-Call CSV, and the command on a stopped gateway's
store (beside a running gateway: tests/gateway/test_consent.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppgw.cli import main
from smppgw.commands.consent import numbers_of

_NATIONAL = st.integers(min_value=10**8, max_value=10**9 - 1).map(lambda n: f"09{n % 10**8:08d}")


def test_csv_lines_header_comments_and_invalid_lines_by_number() -> None:
    lines = [
        "phone,name",
        "0912345678,An",
        "",
        "# from the 2026 campaign",
        '"+84 91 234 5679","Binh, Tran"',
        "abc,x",
        "84912345680",
        "12,y",
    ]
    numbers, invalid = numbers_of(iter(lines), "84")
    assert numbers == ["84912345678", "84912345679", "84912345680"]
    assert [line.split(":")[0] for line in invalid] == ["line 6", "line 8"]
    assert "too short" in invalid[1]


@given(st.lists(st.tuples(_NATIONAL, st.booleans()), max_size=30), st.booleans())
def test_every_valid_number_is_read_and_every_bad_line_named(
    rows: list[tuple[str, bool]], header: bool
) -> None:
    lines = ["number,note"] if header else []
    expected: list[str] = []
    bad: list[int] = []
    for number, ok in rows:
        if ok:
            lines.append(f"{number},ok")
            expected.append("84" + number[1:])
        else:
            lines.append(f"x{number},bad")
            bad.append(len(lines))
    numbers, invalid = numbers_of(iter(lines), "84")
    assert numbers == expected
    assert [int(line.split(":")[0].removeprefix("line ")) for line in invalid] == bad


def test_commands_on_a_store_the_gateway_is_not_running_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"store: {{path: {tmp_path / 'gw.db'}}}\n"
        "carriers: [{name: a, host: h, port: 1, system_id: s, password: p}]\n"
    )
    dnc = tmp_path / "dnc.csv"
    dnc.write_text("\ufeffnumber\n0912345678\n0912345678\n0912345679\nnope\n")

    def run(*args: str) -> tuple[int, str]:
        code = main(["consent", "--config", str(config), *args])
        return code, capsys.readouterr().out

    code, out = run("import", str(dnc))
    assert code == 0
    assert out.startswith("added 2, already opted out 0, repeated in the file 1, invalid lines: 1")
    assert "line 5: destination 'nope'" in out
    assert run("import", str(dnc))[1].startswith("added 0, already opted out 2,")
    assert "84912345678  opted out" in run("list")[1]
    assert run("add", "abc")[0] == 2
    assert run("remove", "0912345678")[1] == "84912345678: removed from the list\n"
    assert run("remove", "0912345678")[1] == "84912345678: not on the list\n"
    lines = sorted(run("export", "--all")[1].splitlines()[1:])
    assert [line.rsplit(",", 1)[0] for line in lines] == [
        "84912345678,opted_in,,admin,",
        "84912345679,opted_out,,admin,",
    ]
    assert run("export")[1].splitlines()[1].startswith("84912345679,opted_out")
    with sqlite3.connect(tmp_path / "gw.db") as conn:
        topics = [t for (t,) in conn.execute("SELECT topic FROM outbox")]
        counts = dict(
            ((a, s), n)
            for a, s, n in conn.execute("SELECT action, source, changes FROM consent_counts")
        )
    assert topics == ["sms/consent"] * 3  # two opt-outs, one removal
    assert counts == {("opt_out", "admin"): 2, ("opt_in", "admin"): 1}
