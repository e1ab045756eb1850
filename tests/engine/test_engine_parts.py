"""The engine's small parts on their own: error policy, receipt map, back-off, validity."""

from __future__ import annotations

import asyncio

import pytest

from smppgw.engine.matching import PartRef, ReceiptMatcher
from smppgw.engine.pdus import relative_validity
from smppgw.engine.policy import Action, ErrorPolicy, parse_status
from smppgw.smpp.constants import Status
from smppgw.smpp.session import backoff


def test_default_policy_follows_the_meaning_of_each_status() -> None:
    policy = ErrorPolicy()
    assert policy.classify(Status.ESME_RTHROTTLED) is Action.THROTTLE
    assert policy.classify(Status.ESME_RMSGQFUL) is Action.THROTTLE
    for status in (Status.ESME_RINVDSTADR, Status.ESME_RINVSRCADR, Status.ESME_RINVDCS):
        assert policy.classify(status) is Action.PERMANENT
    for status in (Status.ESME_RSYSERR, Status.ESME_RSUBMITFAIL, Status.ESME_RX_T_APPN):
        assert policy.classify(status) is Action.TRANSIENT
    assert policy.classify(0x401) is Action.TRANSIENT  # vendor codes: bounded retries
    assert policy.describe(Status.ESME_RINVDSTADR) == "ESME_RINVDSTADR"
    assert policy.describe(0x401) == "0x00000401"


def test_policy_overrides_by_name_or_number() -> None:
    policy = ErrorPolicy(
        {"ESME_RSYSERR": "permanent", "0x401": "throttle", "RINVDSTADR": "transient"}
    )
    assert policy.classify(Status.ESME_RSYSERR) is Action.PERMANENT
    assert policy.classify(0x401) is Action.THROTTLE
    assert policy.classify(Status.ESME_RINVDSTADR) is Action.TRANSIENT
    assert parse_status("69") == 69
    with pytest.raises(ValueError, match="not an SMPP command_status"):
        ErrorPolicy({"ESME_NOPE": "permanent"})
    with pytest.raises(ValueError, match="permanent, transient, throttle"):
        ErrorPolicy({"ESME_RSYSERR": "retry"})


async def test_matcher_is_a_bounded_lru() -> None:
    matcher = ReceiptMatcher(capacity=3)
    for i in range(3):
        matcher.add(str(i), PartRef(f"j{i}", 1, 1))
    assert matcher.get("0") == PartRef("j0", 1, 1)  # touch: "1" is now the oldest
    matcher.add("3", PartRef("j3", 1, 1))
    assert matcher.get("1") is None
    assert matcher.get("0") is not None and len(matcher) == 3


async def test_matcher_wait_releases_held_receipt() -> None:
    matcher = ReceiptMatcher()
    waiter = asyncio.ensure_future(matcher.wait("abc", 1.0))
    await asyncio.sleep(0.01)
    assert matcher.held == 1
    matcher.add("abc", PartRef("j1", 2, 3))
    assert await waiter == PartRef("j1", 2, 3)
    assert await matcher.wait("zzz", 0.01) is None
    assert matcher.held == 0


def test_backoff_grows_with_jitter_above_the_floor() -> None:
    assert backoff(1, 1.0, 60.0, rng=lambda: 0.0) == 1.0
    assert backoff(1, 1.0, 60.0, rng=lambda: 1.0) == 2.0
    assert backoff(3, 1.0, 60.0, rng=lambda: 1.0) == 8.0
    assert backoff(20, 1.0, 60.0, rng=lambda: 1.0) == 60.0
    assert backoff(20, 1.0, 60.0, rng=lambda: 0.5) == 30.5


def test_relative_validity() -> None:
    assert relative_validity(0.4) == "000000000001000R"
    assert relative_validity(3600) == "000000010000000R"
    assert relative_validity(86400 * 2 + 61) == "000002000101000R"
    assert relative_validity(86400 * 45) == "000115000000000R"
