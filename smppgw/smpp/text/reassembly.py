"""Concatenated MO parts → whole texts, within bounds an SMSC cannot push past.

Parts are held per message until all have come; a message whose parts stop coming is
delivered partial (each missing part shown as :data:`MISSING_PART`), so nothing a
subscriber sent is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from smppgw.smpp.text.mo import MoPart
from smppgw.smpp.text.ucs2 import clean

#: Marks each missing part in a partial (timed-out) reassembled MO text.
MISSING_PART = "…"

#: Largest concatenated MO part held for reassembly, in octets of user data. One SMS part
#: carries at most 140 octets on the air (short_message at most 254); message_payload could
#: carry 64 KB, which no part of a real concatenated SMS needs. Larger parts are refused.
MO_MAX_PART_OCTETS = 1600
#: Octets of MO parts held per carrier (incomplete messages, and those delivered partial
#: early that the carrier has not taken yet): about 7,000 parts of 140 octets.
MO_MAX_PENDING_OCTETS = 1 << 20


class MoRefused(Exception):
    """A concatenated MO part the reassembler will not hold.

    ``reason`` is ``too_large`` (the part alone exceeds ``max_part``: it is malformed and
    never will fit) or ``busy`` (no room now even after evicting older messages: the SMSC
    should deliver it again later).
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(slots=True)
class _Pending:
    created: float
    total: int
    #: seq → (text, octets)
    parts: dict[int, tuple[str, int]] = field(default_factory=dict)
    size: int = 0

    def text(self) -> str:
        missing = (MISSING_PART, 0)
        return clean("".join(self.parts.get(seq, missing)[0] for seq in range(1, self.total + 1)))


class Reassembler:
    """Joins concatenated MO parts; a message whose parts stop coming is delivered partial.

    Messages are keyed by the caller's key (e.g. (source, destination)) plus the part's ref
    and total. :meth:`expire` returns messages older than ``timeout`` (counted from their
    first part) with every missing part shown as ``…``, so nothing a subscriber sent is
    dropped.

    Memory is bounded by count and by octets, because the SMSC (or whoever controls it)
    chooses how many parts arrive and how big they are. A part over ``max_part`` octets is
    refused (:class:`MoRefused` ``too_large``). Beyond ``max_pending`` incomplete messages,
    or ``max_bytes`` octets of incomplete messages, the oldest are evicted: handed to
    :meth:`expire` early as partial texts (counted in ``evicted``). Evicted texts waiting
    for :meth:`expire` are bounded by ``max_bytes`` too; when that is full (the caller does
    not keep up) a part is refused with ``busy`` instead of held. So at most twice
    ``max_bytes`` octets of parts are held.
    """

    def __init__(
        self,
        timeout: float = 300.0,
        *,
        max_pending: int = 10_000,
        max_part: int = MO_MAX_PART_OCTETS,
        max_bytes: int = MO_MAX_PENDING_OCTETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self._max = max_pending
        self.max_part = max_part
        self.max_bytes = max_bytes
        self._clock = clock
        self._pending: dict[tuple[tuple[str, str], int, int], _Pending] = {}
        self._pending_bytes = 0
        self._evicted: list[tuple[tuple[str, str], str, int]] = []
        self._evicted_bytes = 0
        #: Incomplete messages evicted early (delivered partial) to stay within the bounds.
        self.evicted = 0

    def __len__(self) -> int:
        """Incomplete messages held."""
        return len(self._pending)

    @property
    def bytes(self) -> int:
        """Octets of parts held: incomplete messages and evicted ones not yet expired."""
        return self._pending_bytes + self._evicted_bytes

    @property
    def has_evicted(self) -> bool:
        """Evicted messages are waiting for :meth:`expire` (call it soon: they hold room)."""
        return bool(self._evicted)

    def add(self, key: tuple[str, str], part: MoPart) -> str | None:
        """Return the whole text when ``part`` completes its message (or is not a part).

        Raises :class:`MoRefused` for a part it will not hold (nothing is kept then).
        """
        if part.concat is None:
            return clean(part.text)
        ref, total, seq = part.concat
        if total < 2 or not 1 <= seq <= total:
            return clean(part.text)
        size = part.size or len(part.text)
        if size > self.max_part:
            raise MoRefused(
                "too_large", f"MO part of {size} octets, at most {self.max_part} in a part"
            )
        slot = (key, ref, total)
        pending = self._pending.get(slot)
        replaced = pending.parts[seq][1] if pending is not None and seq in pending.parts else 0
        growth = size - replaced
        while self._pending_bytes + growth > self.max_bytes and self._evict(keep=slot):
            pass
        if self._pending_bytes + growth > self.max_bytes:
            raise MoRefused(
                "busy",
                f"MO reassembly holds {self.bytes} octets, at most {2 * self.max_bytes}",
            )
        if pending is None:
            if len(self._pending) >= self._max and not self._evict(keep=slot):
                raise MoRefused("busy", f"{len(self._pending)} incomplete MO messages held")
            pending = self._pending[slot] = _Pending(self._clock(), total)
        pending.parts[seq] = (part.text, size)  # a repeated part replaces the earlier copy
        pending.size += growth
        self._pending_bytes += growth
        if len(pending.parts) == total:
            del self._pending[slot]
            self._pending_bytes -= pending.size
            return pending.text()
        return None

    def _evict(self, keep: tuple[tuple[str, str], int, int]) -> bool:
        """Move the oldest incomplete message (not ``keep``) to the evicted list, if there
        is room there for it."""
        for slot, old in self._pending.items():
            if slot == keep:
                continue
            if self._evicted_bytes + old.size > self.max_bytes:
                return False
            del self._pending[slot]
            self._pending_bytes -= old.size
            self._evicted.append((slot[0], old.text(), old.size))
            self._evicted_bytes += old.size
            self.evicted += 1
            return True
        return False

    def expire(self) -> list[tuple[tuple[str, str], str]]:
        """Remove and return (key, partial text) of every message evicted since the last
        call and of every message past its timeout."""
        out = [(key, text) for key, text, _size in self._evicted]
        self._evicted, self._evicted_bytes = [], 0
        deadline = self._clock() - self.timeout
        # Insertion order is creation order, so the expired ones are a prefix.
        while self._pending:
            slot = next(iter(self._pending))
            if self._pending[slot].created > deadline:
                break
            old = self._pending.pop(slot)
            self._pending_bytes -= old.size
            out.append((slot[0], old.text()))
        return out
