"""Marketing rules: may this marketing job go to this number now, later, or never?

Vietnam's Decree 91/2020/ND-CP allows advertising SMS only 07:00–22:00, at most 3 per
number per 24 h, each labelled ``[QC]`` and ending with how to opt out; TCPA's STOP is
the US equivalent of the opt-out. :class:`MarketingGate` is the one place these rules are
decided, as a pure function of a number's state (opted out? when were its recent marketing
sends?) and the time: the store runs it inside the transaction that adds the job and counts
the send, so two jobs to one number can never both take the last slot, and a held job's
release can ask it again.

Decisions, in this order:

1. the number opted out → :class:`Reject` ``opted_out``;
2. ``marketing_daily_cap`` sends already in the rolling 24 h → :class:`Reject`
   ``frequency_cap`` (``cap_action: reject``), or :class:`Hold` until the send that fills
   the cap leaves the 24 h window (``defer``; then moved to the next opening of the hours);
3. outside ``marketing_hours`` in ``timezone`` → :class:`Hold` until they next open;
4. otherwise :class:`Go`.

Window edges are exact in the zone: with ``07:00-22:00`` a job at 21:59:59.999 goes, one at
22:00:00 waits for 07:00 the next day.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smppgw.config import ConsentConfig

#: The rolling period the daily cap counts over.
DAY = 86400.0
_HOURS = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")


@dataclass(frozen=True, slots=True)
class Go:
    """Send it now."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Not before ``until`` (wall clock, ``time.time()``), because of ``reason``."""

    until: float
    reason: Literal["window", "cap"]


@dataclass(frozen=True, slots=True)
class Reject:
    """Never: ``code`` (``opted_out`` / ``frequency_cap``) goes into the ``rejected`` event."""

    code: Literal["opted_out", "frequency_cap"]
    reason: str


Decision = Go | Hold | Reject


@dataclass(frozen=True, slots=True)
class NumberState:
    """What the store knows of one number, read in the deciding transaction."""

    opted_out: bool
    #: Times (wall clock) of its marketing sends counted in the last 24 h, including sends
    #: held for later (counted at their release time), in any order.
    sends: Sequence[float] = ()


def parse_hours(text: str) -> tuple[int, int]:
    """``"07:00-22:00"`` → (25200, 79200): start and end as seconds after local midnight.
    ``"00:00-24:00"`` is the whole day; an end before the start wraps midnight
    (``"22:00-06:00"``). Raises ValueError saying what is wrong."""
    match = _HOURS.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f'must be "HH:MM-HH:MM" (like "07:00-22:00"), got {text!r}')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{text!r}: hours are 00-23 (24:00 only as an end), minutes 00-59")
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if start == end:
        raise ValueError(f'{text!r}: the hours are empty; "00:00-24:00" means always')
    return start, end


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError when this system does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown IANA time zone {name!r} (like Asia/Ho_Chi_Minh)") from None


class Window:
    """Local hours of a day, in one zone: is ``now`` inside, and when do they next open?"""

    __slots__ = ("_end", "_start", "_zone")

    def __init__(self, hours: str, zone_name: str) -> None:
        self._start, self._end = parse_hours(hours)
        self._zone = zone(zone_name)

    def _seconds(self, now: float) -> float:
        """Seconds after local midnight at ``now``. The whole second is converted and the
        fraction added back: ``datetime.fromtimestamp`` rounds to the microsecond, which
        would put 21:59:59.9999997 at 22:00:00 and make an edge depend on rounding."""
        whole = math.floor(now)
        moment = datetime.fromtimestamp(whole, self._zone)
        return moment.hour * 3600 + moment.minute * 60 + moment.second + (now - whole)

    def is_open(self, now: float) -> bool:
        local = self._seconds(now)
        if self._start < self._end:
            return self._start <= local < self._end
        return local >= self._start or local < self._end  # wraps midnight

    def next_open(self, now: float) -> float:
        """``now`` when open, else the next moment the hours start (wall clock)."""
        if self.is_open(now):
            return now
        local = datetime.fromtimestamp(math.floor(now), self._zone)
        start = time(self._start // 3600, self._start % 3600 // 60)
        day = local.date()
        for _ in range(3):  # today or tomorrow (a DST gap may skip one)
            opening = datetime.combine(day, start, tzinfo=self._zone).timestamp()
            if opening > now:
                return opening
            day += timedelta(days=1)
        raise AssertionError("no opening within two days")  # pragma: no cover


def decorate(text: str, prefix: str, footer: str) -> str:
    """A marketing text as sent: ``prefix`` first unless the text already starts with it,
    ``footer`` last unless it already ends with it (each compared without surrounding
    spaces, so ``"[QC]Sale"`` keeps its own label); NFC, like every job text."""
    label = prefix.strip()
    if label and not text.lstrip().startswith(label):
        text = prefix + text
    tail = footer.strip()
    if tail and not text.rstrip().endswith(tail):
        text = text + footer
    return unicodedata.normalize("NFC", text)


class MarketingGate:
    """The marketing rules of one ``consent:`` config, as a pure decision."""

    __slots__ = ("_cap", "_defer", "_window")

    def __init__(self, consent: ConsentConfig) -> None:
        self._window = Window(consent.marketing_hours, consent.timezone)
        self._cap = consent.marketing_daily_cap
        self._defer = consent.cap_action == "defer"

    @property
    def window(self) -> Window:
        return self._window

    def decide(self, state: NumberState, now: float) -> Decision:
        if state.opted_out:
            return Reject("opted_out", "the number opted out of marketing messages")
        if self._cap:
            recent = sorted(t for t in state.sends if t > now - DAY)
            if len(recent) >= self._cap:
                if not self._defer:
                    return Reject(
                        "frequency_cap",
                        f"{len(recent)} marketing messages to this number in 24 h "
                        f"(consent.marketing_daily_cap {self._cap})",
                    )
                # After every counted send (a held one included) and once the send that
                # fills the cap has left the 24 h window: then no 24 h window holds more
                # than the cap, whenever later sends come.
                free = max(recent[-1], recent[-self._cap] + DAY, now)
                return Hold(self._window.next_open(free), "cap")
        if not self._window.is_open(now):
            return Hold(self._window.next_open(now), "window")
        return Go()
