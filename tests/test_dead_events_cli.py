"""``smppgw dead-events``: listing what the outbox set aside, from a real store file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from smppgw.cli import main
from smppgw.store import OutboxEvent, Store


def _config(tmp_path: Path, store: Path) -> Path:
    path = tmp_path / "gw.yaml"
    carrier = {
        "name": "viettel",
        "host": "127.0.0.1",
        "port": 2775,
        "system_id": "shop",
        "password": "pw",
        "prefixes": ["8498"],
    }
    path.write_text(yaml.safe_dump({"store": {"path": str(store)}, "carriers": [carrier]}))
    return path


async def test_lists_newest_first_in_text_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = tmp_path / "gw.db"
    async with Store(str(store_path)) as store:
        ids = await store.add_events(
            [OutboxEvent("x/#", b'{"status":"queued"}'), OutboxEvent("app/r", b"\xff\xfe", b"c")]
        )
        await store.set_aside([(ids[0], "topic contains a wildcard '#'")])
        await store.set_aside([(ids[1], "broker refused the publish: PUBACK 0x87")])
    config = str(_config(tmp_path, store_path))

    assert main(["dead-events", "--config", config]) == 0
    text = capsys.readouterr().out
    assert text.index("'app/r'") < text.index("'x/#'")
    assert "reason: topic contains a wildcard '#'" in text
    assert 'payload: {"status":"queued"}' in text

    assert main(["dead-events", "--config", config, "--json", "--limit", "1"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["topic"] == "app/r"
    assert base64.b64decode(row["payload_base64"]) == b"\xff\xfe"  # not UTF-8: exact bytes
    assert row["correlation_data_hex"] == "63"


def test_a_missing_store_or_a_bad_limit_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_config(tmp_path, tmp_path / "none.db"))
    assert main(["dead-events", "--config", config]) == 2
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # looking never creates one
    assert main(["dead-events", "--config", config, "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err
