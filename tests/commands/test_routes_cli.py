"""``smppgw routes``: the ported-number cache of a store a gateway holds open, on SQLite
and on the PostgreSQL store a cluster shares (``store.backend: postgres``).

The command runs ``asyncio.run`` like any CLI: the tests call it from a thread of their
own while the gateway's store stays open on the test's event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from smppgw.cli import main
from smppgw.store import Store
from smppgw.store.pg import PostgresStore

from support.servers import Postgres


async def routes(config: str, *args: str) -> int:
    return await asyncio.to_thread(main, ["routes", "--config", config, *args])


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """(config file, ``open()`` of the gateway's store) for one backend."""
    if request.param == "sqlite":
        path = tmp_path / "gw.db"
        yield _config(tmp_path, path), lambda: Store(str(path))
        return
    server: Postgres = request.getfixturevalue("postgres_server")
    dsn = server.create_database()
    store = {"backend": "postgres", "dsn": dsn}
    yield _config(tmp_path, store), lambda: PostgresStore(dsn, node="gw-a")
    server.drop_database(dsn)


def _config(tmp_path: Path, store: Path | dict[str, str]) -> str:
    def carrier(name: str, prefixes: list[str], **extra: object) -> dict[str, object]:
        return {
            "name": name,
            "host": "127.0.0.1",
            "port": 2775,
            "system_id": "shop",
            "password": "pw",
            "prefixes": prefixes,
            **extra,
        }

    path = tmp_path / "gw.yaml"
    document = {
        "store": store if isinstance(store, dict) else {"path": str(store)},
        "carriers": [
            carrier("viettel", ["8498"], failover=["vinaphone", "mobifone"]),
            carrier("vinaphone", ["8491"]),
            carrier("mobifone", ["8490"]),
        ],
    }
    path.write_text(yaml.safe_dump(document))
    return str(path)


async def test_import_lookup_list_forget_on_the_store_of_a_running_gateway(
    tmp_path: Path, backend: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config, open_store = backend
    csv = tmp_path / "ported.csv"
    csv.write_text(
        "number,carrier\n# from the MNP clearing house\n0981110000,vinaphone\n"
        "+84 98 111 0001,mobifone\n\n84981110002,viettel\n"
    )
    # The gateway's store is open (its writer thread holds a connection) the whole time.
    async with open_store() as store:
        assert await routes(config, "import", str(csv)) == 0
        out = capsys.readouterr().out
        assert "3 numbers: 3 added, 0 changed, 0 unchanged" in out
        assert await store.count_ported() == 3  # the gateway sees them at once

        csv.write_text("0981110000,mobifone\n0981110001,mobifone\n")
        assert await routes(config, "import", str(csv)) == 0
        assert "2 numbers: 0 added, 1 changed, 1 unchanged" in capsys.readouterr().out

        assert await routes(config, "lookup", "0981110000") == 0
        out = capsys.readouterr().out
        assert "84981110000: prefix carrier viettel" in out
        assert "mobifone  (import" in out and "no expiry" in out
        assert "a job goes to mobifone; chain mobifone → viettel → vinaphone" in out

        assert await routes(config, "lookup", "0982220000") == 0
        out = capsys.readouterr().out
        assert "ported: not known" in out
        assert "a job goes to viettel; chain viettel → vinaphone → mobifone" in out

        assert await routes(config, "list") == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[:2] for line in lines] == [
            ["84981110000", "mobifone"],
            ["84981110001", "mobifone"],
            ["84981110002", "viettel"],
        ]

        assert await routes(config, "forget", "+84981110000") == 0
        assert "84981110000: forgot mobifone (import)" in capsys.readouterr().out
        assert await routes(config, "forget", "0981110000") == 0
        assert "not known; nothing changed" in capsys.readouterr().out
        assert await store.count_ported() == 2


async def test_a_wrong_line_refuses_the_whole_file_naming_each_line(
    tmp_path: Path, backend: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config, open_store = backend
    async with open_store():
        pass
    csv = tmp_path / "bad.csv"
    csv.write_text("0981110000,vinaphone\n09811x,vinaphone\n0981110001,gmobile\n0981110002\n")
    assert await routes(config, "import", str(csv)) == 2
    err = capsys.readouterr().err
    assert "not imported, nothing changed" in err
    assert "line 2: destination '09811x' contains characters that are not digits: 'x'" in err
    assert "line 3: unknown carrier 'gmobile' (known: mobifone, viettel, vinaphone)" in err
    assert "line 4: expected number,carrier, got 1 fields" in err
    assert await routes(config, "list") == 0
    assert capsys.readouterr().out.strip() == "no ported numbers"


async def test_import_of_a_large_list_is_one_fast_transaction(
    tmp_path: Path, backend: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config, open_store = backend
    async with open_store():
        pass
    count = 50_000
    csv = tmp_path / "mnp.csv"
    csv.write_text("".join(f"8498{i:07d},vinaphone\n" for i in range(count)))
    started = time.monotonic()
    assert await routes(config, "import", str(csv)) == 0
    took = time.monotonic() - started
    assert f"{count} numbers: {count} added" in capsys.readouterr().out
    assert took < 10.0, f"import of {count} numbers took {took:.1f} s"


def test_no_store_and_bad_number_are_precise_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, tmp_path / "missing.db")
    assert main(["routes", "--config", config, "list"]) == 2
    assert "no store at" in capsys.readouterr().err
    store_path = tmp_path / "missing.db"
    store_path.touch()
    assert main(["routes", "--config", config, "lookup", "12"]) == 2
    assert "too short" in capsys.readouterr().err


def test_an_unreachable_or_unmigrated_postgres_is_a_precise_error_without_the_dsn(
    tmp_path: Path, postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    down = _config(
        tmp_path,
        {"backend": "postgres", "dsn": "postgresql://smppgw:s3cret@127.0.0.1:1/gw"},
    )
    assert main(["routes", "--config", down, "list"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to PostgreSQL" in err and "s3cret" not in err
    # A database no gateway (nor ``smppgw migrate``) has created the tables in.
    empty = _config(tmp_path, {"backend": "postgres", "dsn": postgres_dsn})
    assert main(["routes", "--config", empty, "list"]) == 2
    assert 'UndefinedTableError: relation "ported" does not exist' in capsys.readouterr().err
