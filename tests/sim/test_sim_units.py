"""The simulator's small parts: sliding window, timeline, receipt building, parsers."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppgw.sim.accounts import SlidingWindow
from smppgw.sim.config import SimConfigError, parse_accounts, parse_listen, parse_mix, parse_status
from smppgw.sim.receipts import ReceiptFactory, ReceiptJob, Timeline
from smppgw.smpp.constants import Status
from smppgw.smpp.receipt import format_receipt_text


@given(
    tps=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.4), min_size=1, max_size=200),
)
def test_sliding_window_never_over_and_never_refuses_needlessly(
    tps: int, gaps: list[float]
) -> None:
    window = SlidingWindow(tps)
    now = 1000.0
    accepted: list[float] = []
    for gap in gaps:
        now += gap
        in_last_second = sum(1 for t in accepted if t > now - 1.0)
        allowed = window.allow(now)
        # Exactly the SMSC's rule: accept while fewer than tps in the last second.
        assert allowed == (in_last_second < tps)
        if allowed:
            accepted.append(now)


def test_sliding_window_below_one_per_second() -> None:
    window = SlidingWindow(0.5)
    assert window.allow(0.0) and not window.allow(1.9) and window.allow(2.0)


async def test_timeline_runs_in_time_order_in_batches() -> None:
    loop = asyncio.get_running_loop()
    timeline = Timeline(loop)
    ran: list[str] = []
    now = loop.time()
    timeline.at(now + 0.06, ran.append, "c")
    timeline.at(now + 0.02, ran.append, "a")  # earlier than the last: goes to the heap
    timeline.at(now + 0.04, ran.append, "b")
    timeline.at(now + 0.06, ran.append, "d")
    await asyncio.sleep(0.03)
    assert ran == ["a"]
    await asyncio.sleep(0.06)
    assert ran == ["a", "b", "c", "d"] and len(timeline) == 0
    timeline.at(loop.time() + 0.01, ran.append, "never")
    timeline.close()
    await asyncio.sleep(0.03)
    assert ran[-1] == "d"


def job(**changes: object) -> ReceiptJob:
    fields: dict[str, object] = {
        "account": "shop",
        "message_id": "1A2B",
        "submitted": datetime(2024, 5, 6, 7, 8, 9).timestamp(),
        "source": "SHOPVN",
        "source_ton": 5,
        "source_npi": 0,
        "destination": "84912345678",
        "dest_ton": 1,
        "dest_npi": 1,
        "text": b"Your OTP is 123456 - do not share",
        "registered_delivery": 1,
    }
    fields.update(changes)
    return ReceiptJob(**fields)  # type: ignore[arg-type]


def test_receipt_text_is_the_standard_one() -> None:
    factory = ReceiptFactory({"DELIVRD": 1.0})
    done = datetime(2024, 5, 6, 7, 9, 59)
    pdu = factory.build(job(), done.timestamp())
    assert pdu is not None
    assert pdu.short_message == format_receipt_text(
        "1A2B", "DELIVRD", datetime(2024, 5, 6, 7, 8), datetime(2024, 5, 6, 7, 9), "000",
        "Your OTP is 123456 - do not share",
    )  # fmt: skip
    assert b"submit date:2405060708 done date:2405060709" in pdu.short_message


def test_receipt_mix_follows_the_weights() -> None:
    factory = ReceiptFactory({"DELIVRD": 95, "UNDELIV": 5}, rng=random.Random(7))
    picks = [factory.pick_state() for _ in range(4000)]
    assert 3700 < picks.count("DELIVRD") < 3900
    assert set(picks) == {"DELIVRD", "UNDELIV"}


def test_other_base_ids() -> None:
    assert ReceiptFactory({"DELIVRD": 1}, other_base=True).receipt_id("FF") == "255"
    factory = ReceiptFactory({"DELIVRD": 1}, id_format="decimal", other_base=True)
    assert factory.receipt_id("255") == "FF"


def test_parsers() -> None:
    assert parse_listen("0.0.0.0:2775") == ("0.0.0.0", 2775)
    assert parse_listen(":2775") == ("127.0.0.1", 2775)
    assert parse_listen("2775") == ("127.0.0.1", 2775)
    assert parse_listen("[::1]:2775") == ("::1", 2775)
    assert parse_status("ESME_RTHROTTLED") == Status.ESME_RTHROTTLED
    assert parse_status("esme_rsyserr") == Status.ESME_RSYSERR
    assert parse_status("0x58") == 0x58 and parse_status(8) == 8
    assert parse_mix("DELIVRD:0.9, undeliv:0.1") == {"DELIVRD": 0.9, "UNDELIV": 0.1}
    assert parse_accounts("a:b")[0].tps is None
    for bad in ("host:port", "1:99999"):
        with pytest.raises(SimConfigError):
            parse_listen(bad)
    with pytest.raises(SimConfigError):
        parse_accounts("nopassword")
    with pytest.raises(SimConfigError):
        parse_mix("DELIVRD:0")
    with pytest.raises(SimConfigError):
        parse_status("ESME_WHAT")
