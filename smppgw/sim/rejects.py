"""Destinations the simulated SMSC refuses, by number prefix: how a ported number is imitated.

After mobile number portability a carrier's SMSC answers a submit_sm to a number that has left
it with an error (ESME_RINVDSTADR, or a vendor code) and sends no receipt. Tests of the
gateway's failover need exactly that from one simulator and not from another, for chosen
numbers only, so the refusal is a table of destination prefixes (an exact number is just the
longest prefix) to command_status, changeable at run time through the control port.

Entries come as ``PREFIX:STATUS`` on the command line (``8496111:0x0B``), a mapping in the
YAML file (``reject_dest: {"8496111": ESME_RINVDSTADR}``) or a JSON object on the control port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from smppgw.sim.config import SimConfigError, parse_status

#: Longest destination_addr SMPP 3.4 allows (21 octets with the NUL): a longer prefix
#: could never match.
MAX_PREFIX = 20


def check_prefix(prefix: object) -> str:
    """A destination prefix: 1-20 ASCII digits (a number as the gateway sends it, no '+')."""
    text = str(prefix).strip() if isinstance(prefix, str | int) else ""
    if isinstance(prefix, bool) or not (
        0 < len(text) <= MAX_PREFIX and text.isascii() and text.isdigit()
    ):
        raise SimConfigError(f"reject_dest: prefix {prefix!r} must be 1-{MAX_PREFIX} digits")
    return text


def check_status(prefix: str, status: object) -> int:
    """A non-zero command_status (``0x0B``, ``11``, ``ESME_RINVDSTADR``) for ``prefix``."""
    if not isinstance(status, int | str):
        raise SimConfigError(f"reject_dest: {prefix}: status {status!r} is not a command_status")
    try:
        value = parse_status(status)
    except SimConfigError as exc:
        raise SimConfigError(f"reject_dest: {prefix}: {exc}") from None
    if not 0 < value <= 0xFFFFFFFF:
        raise SimConfigError(
            f"reject_dest: {prefix}: status {status!r} must be a non-zero command_status"
        )
    return value


def parse_entry(text: str) -> tuple[str, int]:
    """``PREFIX:STATUS`` as given to ``--reject-dest``."""
    prefix, sep, status = text.partition(":")
    if not sep or not status.strip():
        raise SimConfigError(f"--reject-dest {text!r}: expected PREFIX:STATUS (8496111:0x0B)")
    checked = check_prefix(prefix)
    return checked, check_status(checked, status.strip())


def parse_entries(items: Iterable[str]) -> dict[str, int]:
    """Several ``--reject-dest`` values; a prefix given twice keeps its last status."""
    return dict(parse_entry(item) for item in items)


def from_mapping(raw: object) -> dict[str, int]:
    """The YAML / JSON form: ``{prefix: status}``, or a list of ``PREFIX:STATUS`` strings."""
    if isinstance(raw, list):
        return parse_entries(str(item) for item in raw)
    if not isinstance(raw, Mapping):
        raise SimConfigError("reject_dest: expected a mapping of prefix to status")
    table: dict[str, int] = {}
    for prefix, status in raw.items():
        checked = check_prefix(prefix)
        table[checked] = check_status(checked, status)
    return table


class DestRejects:
    """Prefix → status; :meth:`match` finds the longest prefix of a destination.

    The submit hot path calls :meth:`match` for every submit, so an empty table costs one
    truth test, and a full one a dict look-up per distinct prefix length (a handful), not a
    scan of every entry.
    """

    __slots__ = ("_lengths", "table")

    def __init__(self, table: Mapping[str, int] | None = None) -> None:
        self.table: dict[str, int] = {}
        self._lengths: list[int] = []
        for prefix, status in (table or {}).items():
            self.set(prefix, status)

    def __bool__(self) -> bool:
        return bool(self.table)

    def set(self, prefix: object, status: object) -> None:
        """Refuse destinations starting with ``prefix`` with ``status`` (replaces its entry).

        Both are checked here, so the control port can pass what a JSON body holds."""
        checked = check_prefix(prefix)
        self.table[checked] = check_status(checked, status)
        self._reindex()

    def remove(self, prefix: str) -> bool:
        """Stop refusing ``prefix``; False when it was not in the table."""
        if self.table.pop(prefix, None) is None:
            return False
        self._reindex()
        return True

    def _reindex(self) -> None:
        self._lengths = sorted({len(p) for p in self.table}, reverse=True)

    def match(self, destination: str) -> int:
        """The status for ``destination`` (longest matching prefix), 0 when it is not refused."""
        table = self.table
        for length in self._lengths:
            status = table.get(destination[:length]) if length <= len(destination) else None
            if status is not None:
                return status
        return 0

    def as_json(self) -> dict[str, str]:
        """Prefix → status as ``0x``-hex text, longest prefixes first (as they are tried)."""
        ordered = sorted(self.table.items(), key=lambda item: (-len(item[0]), item[0]))
        return {prefix: f"0x{status:08X}" for prefix, status in ordered}
