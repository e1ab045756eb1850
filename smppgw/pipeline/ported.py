"""Ported numbers: the operator's CSV list, and the lookup intake does for every job.

Vietnam has had mobile number portability since 2018-2019, so a number's prefix no longer
says which network serves it. The gateway keeps number → carrier mappings in the store's
``ported`` table: learned from refusals (:mod:`smppgw.pipeline.failover`), loaded from
``routing.ported_file`` or imported with ``smppgw routes import``.

The CSV format (an operator's MNP list): one ``number,carrier`` per line, the number in
any form a job's ``to`` accepts (``0981234567``, ``84981234567``, ``+84 98 123 4567``),
the carrier a configured name; blank lines and lines starting with ``#`` are skipped, and
so is a first line ``number,carrier`` (a header).

Intake looks a number up, for each job whose chain it plans:

* SQLite (:class:`PortedLookup`): through its own read-only connection to the database
  (WAL lets it read while the writer thread writes, and it sees what ``smppgw routes``
  changed at once): one primary-key probe, a few microseconds, with no trip through the
  writer.
* PostgreSQL (:class:`SharedPortedLookup`): the table is shared by the cluster and cannot
  be read synchronously, so the lookup is an await on the store, merged by its writer
  with the other lookups queued next to it (one intake turn's jobs: one statement, one
  round trip). No copy is kept in the gateway, so nothing goes stale: a job sees every
  mapping committed before its lookup, whichever gateway (or ``smppgw routes``) wrote it;
  a port learned by another gateway applies to the next job taken after its commit.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from smppgw.aio import RunningLoop
from smppgw.ops.logs import get_logger
from smppgw.pipeline.routing import RoutingError, normalize_msisdn
from smppgw.store.contract import StoreAPI
from smppgw.store.model import StoreError
from smppgw.store.routes import count_ported, ported_carrier
from smppgw.store.writer import Tx

log = get_logger("smppgw.ported")

#: Problems listed at most, for a broken file (the rest are counted).
MAX_PROBLEMS = 20


@dataclass(slots=True, frozen=True)
class PortedList:
    """A parsed CSV: the entries (E.164 number, carrier) and every problem, by line."""

    entries: list[tuple[str, str]]
    problems: list[str]


def parse_ported_csv(text: str, country_code: str, carriers: Collection[str]) -> PortedList:
    """Read ``number,carrier`` lines; a line that is wrong is a problem naming its line
    number, and the caller refuses the whole list (a half-applied MNP list is worse than
    the old one). A number listed twice keeps its last line."""
    entries: dict[str, str] = {}
    problems: list[str] = []
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if line_no == 1 and [c.lower() for c in cells] == ["number", "carrier"]:
            continue
        if len(cells) != 2:
            problems.append(f"line {line_no}: expected number,carrier, got {len(cells)} fields")
            continue
        raw, carrier = cells
        try:
            number = normalize_msisdn(raw, country_code)
        except RoutingError as exc:
            problems.append(f"line {line_no}: {exc.reason}")
            continue
        if carrier not in carriers:
            known = ", ".join(sorted(carriers)) or "none"
            problems.append(f"line {line_no}: unknown carrier {carrier!r} (known: {known})")
            continue
        entries.pop(number, None)
        entries[number] = carrier
    return PortedList(list(entries.items()), problems)


def read_ported_file(path: str, country_code: str, carriers: Collection[str]) -> PortedList:
    """:func:`parse_ported_csv` of a file; an unreadable file is one problem."""
    try:
        with open(path, encoding="utf-8-sig") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        return PortedList([], [f"{path}: cannot read: {exc}"])
    return parse_ported_csv(text, country_code, carriers)


def shown(problems: list[str]) -> str:
    """At most ``MAX_PROBLEMS`` problems, one per line, and how many more."""
    head = problems[:MAX_PROBLEMS]
    more = len(problems) - len(head)
    return "\n".join(head + ([f"... and {more} more"] if more else []))


def _read_only(path: str, timeout: float) -> sqlite3.Connection:
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout)


class PortedLookup:
    """number → carrier from the store's ``ported`` table, for intake (read-only).

    From its second lookup on, one event-loop turn's lookups share one read transaction,
    ended by a callback at the next turn: a statement run on its own opens and closes a
    WAL read transaction (two ``fcntl`` locks, and the table's pages read again whenever
    the writer committed since), ~2 system calls and ~5 µs a job flat out against ~3 µs
    in a shared one (issue 13). A turn with one job (low load) keeps the single
    statement: ``BEGIN`` and ``COMMIT`` would cost it ~1.7 µs more. A turn's lookups see
    the table as of its second one; the writer is never blocked by that, and a checkpoint
    waits at most until the next turn."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        #: This turn has looked up already (reset by a callback at the next turn); a read
        #: transaction open on ``_conn`` (``in_transaction``) lasts until then too.
        self._looked = False
        self._running = RunningLoop()

    def open(self) -> None:
        """After the store opened (and created or upgraded) the database."""
        if self._path == ":memory:" or self._path.startswith("file:"):
            return  # a private database: nothing to share (tests)
        self._conn = _read_only(self._path, timeout=0.1)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # rolls back a read transaction still open
            self._conn = None
        self._looked = False

    def count(self) -> int | None:
        """Mappings in use, counted on a connection of its own (call it in a thread: a
        large list takes tens of milliseconds, which neither the event loop nor the
        store's writer should spend). None for a private database."""
        if self._conn is None:
            return None
        conn = _read_only(self._path, timeout=5.0)
        try:
            return count_ported(Tx(conn, time.time()))
        finally:
            conn.close()

    def carrier(self, number: str) -> str | None:
        """The carrier ``number`` was ported to, or None (also when the read fails: the
        job is then routed by prefix and still fails over)."""
        conn = self._conn
        if conn is None:
            return None
        try:
            if not self._looked:
                self._looked = True
                self._running().call_soon(self._end_turn, conn)
            elif not conn.in_transaction:
                conn.execute("BEGIN")
            return ported_carrier(conn, number, time.time())
        except sqlite3.Error as exc:
            log.warning("ported_lookup_failed", error=str(exc))
            return None

    def _end_turn(self, conn: sqlite3.Connection) -> None:
        """End the turn's read transaction, if any (the next turn sees what was committed)."""
        if conn is not self._conn:
            return  # closed (or reopened) since: nothing of ours is open
        self._looked = False
        if not conn.in_transaction:
            return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("ported_lookup_failed", error=str(exc))
            if conn.in_transaction:  # never carry a stale snapshot into the next turn
                # if that fails too, the next turn's end tries again
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")


class SharedPortedLookup:
    """number → carrier from a shared store's ``ported`` table (PostgreSQL), for intake:
    the same life cycle as :class:`PortedLookup`, an async ``carrier``."""

    def __init__(self, store: StoreAPI) -> None:
        self._store = store

    def open(self) -> None:
        """Nothing to open: the lookups go through the store."""

    def close(self) -> None:
        """Nothing to close."""

    def count(self) -> int | None:
        """None: the store counts (``count_ported``)."""
        return None

    async def carrier(self, number: str) -> str | None:
        """The carrier ``number`` was ported to, or None (also when the read fails: the
        job is then routed by prefix and still fails over)."""
        try:
            return await self._store.ported_carrier(number)
        except StoreError as exc:
            log.warning("ported_lookup_failed", error=str(exc))
            return None
