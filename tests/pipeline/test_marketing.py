"""The marketing gate: opt-outs, the rolling 24 h cap and the hours, as a pure decision.

Every time here is an explicit moment in an explicit zone, so the tests pass whatever the
clock says when they run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppgw.config import ConsentConfig
from smppgw.pipeline.marketing import (
    DAY,
    Go,
    Hold,
    MarketingGate,
    NumberState,
    Reject,
    Window,
    decorate,
    parse_hours,
)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
FREE = NumberState(opted_out=False)


def at(hour: int, minute: int = 0, second: int = 0, day: int = 6, zone: ZoneInfo = HCM) -> float:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=zone).timestamp()


def gate(**changes: object) -> MarketingGate:
    return MarketingGate(replace(ConsentConfig(), **changes))  # type: ignore[arg-type]


def test_window_edges_are_exact_in_the_zone() -> None:
    g = gate()
    assert g.decide(FREE, at(21, 59, 59)) == Go()
    assert g.decide(FREE, at(21, 59, 59) + 0.999) == Go()
    # Within a microsecond of the edge: decided on the exact time, not a rounded one.
    assert g.decide(FREE, at(21, 59, 59) + 0.9999998) == Go()
    assert isinstance(g.decide(FREE, at(6, 59, 59) + 0.9999998), Hold)
    assert g.decide(FREE, at(22)) == Hold(at(7, day=7), "window")
    assert g.decide(FREE, at(6, 59, 59)) == Hold(at(7), "window")
    assert g.decide(FREE, at(7)) == Go()
    assert g.decide(FREE, at(0, 30)) == Hold(at(7), "window")


def test_the_same_instant_is_read_in_the_configured_zone() -> None:
    # 15:30 UTC is 22:30 in Ho Chi Minh City (closed) and 10:30 in New York (open).
    instant = datetime(2026, 12, 6, 15, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    assert isinstance(gate().decide(FREE, instant), Hold)
    assert gate(timezone="America/New_York").decide(FREE, instant) == Go()


def test_hours_that_wrap_midnight() -> None:
    g = gate(marketing_hours="22:00-06:00")
    assert g.decide(FREE, at(22)) == Go()
    assert g.decide(FREE, at(23, 59, 59)) == Go()
    assert g.decide(FREE, at(0)) == Go()
    assert g.decide(FREE, at(5, 59, 59)) == Go()
    assert g.decide(FREE, at(6)) == Hold(at(22), "window")
    assert g.decide(FREE, at(21, 59, 59)) == Hold(at(22), "window")
    always = gate(marketing_hours="00:00-24:00")
    assert all(always.decide(FREE, at(h, 30)) == Go() for h in range(24))


def test_opted_out_is_rejected_before_anything_else() -> None:
    decision = gate().decide(NumberState(opted_out=True, sends=[at(9)] * 5), at(3))
    assert isinstance(decision, Reject) and decision.code == "opted_out"


def test_cap_rejects_the_fourth_in_any_24_hours() -> None:
    g = gate()
    sends = [at(9), at(10), at(11)]
    assert g.decide(NumberState(False, sends[:2]), at(12)) == Go()
    decision = g.decide(NumberState(False, sends), at(12))
    assert isinstance(decision, Reject) and decision.code == "frequency_cap"
    assert "marketing_daily_cap 3" in decision.reason
    # Rolling: the 09:00 send leaves the window at 09:00 the next day, not at midnight.
    assert isinstance(g.decide(NumberState(False, sends), at(8, 59, 59, day=7)), Reject)
    assert g.decide(NumberState(False, sends), at(9, 0, 1, day=7)) == Go()
    assert gate(marketing_daily_cap=0).decide(NumberState(False, sends * 10), at(12)) == Go()


def test_cap_defer_holds_until_the_oldest_send_leaves_the_window() -> None:
    g = gate(cap_action="defer")
    sends = [at(9), at(10), at(11)]
    assert g.decide(NumberState(False, sends), at(12)) == Hold(at(9, day=7), "cap")
    # A release time outside the hours (sent before a reload narrowed them) moves to
    # their next opening.
    narrow = gate(cap_action="defer", marketing_hours="08:00-20:00")
    late = [at(21), at(21, 30), at(21, 45)]
    assert narrow.decide(NumberState(False, late), at(9, day=7)) == Hold(at(8, day=8), "cap")
    # Sends already held for later count too: the next one goes no earlier than them.
    held = [at(9), at(10), at(9, day=7)]
    assert g.decide(NumberState(False, held), at(12)) == Hold(at(9, day=7), "cap")
    held = [at(9), at(10), at(9, 30, day=7)]
    assert g.decide(NumberState(False, held), at(12)) == Hold(at(9, 30, day=7), "cap")


@given(
    st.floats(min_value=at(0, day=1), max_value=at(0, day=1) + 400 * DAY),
    st.sampled_from(["Asia/Ho_Chi_Minh", "America/New_York", "Europe/London", "UTC"]),
    st.sampled_from(["07:00-22:00", "22:00-06:00", "00:30-00:45", "08:15-23:59"]),
)
def test_next_open_is_the_first_open_moment(now: float, zone: str, hours: str) -> None:
    window = Window(hours, zone)
    opening = window.next_open(now)
    assert window.is_open(opening)
    assert opening >= now
    if opening > now:
        # Closed from now until the opening (sampled each minute, and just before it).
        start, _ = parse_hours(hours)
        local = datetime.fromtimestamp(opening, ZoneInfo(zone))
        assert local.hour * 3600 + local.minute * 60 == start and local.second == 0
        assert not window.is_open(opening - 0.001)
        assert opening - now <= DAY + 3600  # within a day (a DST change adds an hour)
        probe = now
        while probe < opening:
            assert not window.is_open(probe)
            probe += 60


@given(
    st.lists(st.floats(min_value=0, max_value=2 * DAY), max_size=8),
    st.floats(min_value=DAY, max_value=2 * DAY),
    st.integers(min_value=1, max_value=4),
)
def test_deferred_sends_never_exceed_the_cap_in_any_24_hours(
    sends: list[float], now: float, cap: int
) -> None:
    """Accept jobs one after the other at ``now``, each at its decided time: no 24 h
    window ever holds more than the cap."""
    base = at(0, day=1)
    g = gate(cap_action="defer", marketing_daily_cap=cap, marketing_hours="00:00-24:00")
    counted = sorted(base + s for s in sends if base + s <= base + now)
    counted = counted[-cap:] if len(counted) > cap else counted  # a state the gate allowed
    for _ in range(cap + 2):
        decision = g.decide(NumberState(False, counted), base + now)
        assert not isinstance(decision, Reject)
        counted.append(decision.until if isinstance(decision, Hold) else base + now)
    counted.sort()
    for i, start in enumerate(counted):
        assert sum(1 for t in counted[i:] if t < start + DAY) <= cap


def test_decorate_puts_the_label_first_and_the_footer_last_once() -> None:
    footer = " Tu choi: soan TC gui 8079"
    assert decorate("Sale 50%", "[QC] ", footer) == "[QC] Sale 50% Tu choi: soan TC gui 8079"
    assert decorate("[QC] Sale", "[QC] ", "") == "[QC] Sale"
    assert decorate("[QC]Sale", "[QC] ", "") == "[QC]Sale"
    assert decorate("Sale" + footer, "", footer) == "Sale" + footer
    assert decorate("Sale", "", "") == "Sale"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("7-22", 'must be "HH:MM-HH:MM"'),
        ("07:00-25:00", "hours are 00-23"),
        ("07:60-22:00", "minutes 00-59"),
        ("08:00-08:00", "the hours are empty"),
    ],
)
def test_bad_hours_are_named(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_hours(text)


def test_dst_zone_opens_at_local_start_across_the_change() -> None:
    ny = ZoneInfo("America/New_York")
    window = Window("07:00-22:00", "America/New_York")
    # The night clocks go back (1 Nov 2026): 23:00 → 07:00 local the next morning.
    night = datetime(2026, 10, 31, 23, 0, tzinfo=ny).timestamp()
    assert window.next_open(night) == datetime(2026, 11, 1, 7, 0, tzinfo=ny).timestamp()
    assert datetime(2026, 11, 1, 7, tzinfo=ny) - datetime(2026, 10, 31, 23, tzinfo=ny) == (
        timedelta(hours=8)
    )
