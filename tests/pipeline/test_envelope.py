"""The MQTT envelope of a job: Response Topic, Correlation Data and retain, checked at intake."""

from __future__ import annotations

from dataclasses import replace

import pytest

from smppgw.config import MqttConfig
from smppgw.mqtt import Message
from smppgw.pipeline.envelope import (
    MAX_RESPONSE_TOPIC,
    RETAINED,
    Envelope,
    EnvelopeGuard,
    own_topics,
)

GUARD = EnvelopeGuard(MqttConfig())


def message(
    response_topic: str | None = None, correlation_data: bytes | None = None, retain: bool = False
) -> Message:
    return Message(
        topic="sms/submit",
        payload=b"{}",
        qos=1,
        response_topic=response_topic,
        correlation_data=correlation_data,
        retain=retain,
    )


def test_a_plain_job_and_a_good_reply_address_pass() -> None:
    assert GUARD.check(message()) == Envelope((), None, None)
    envelope = GUARD.check(message("shop/replies/7", b"req-42"))
    assert envelope.problems == ()
    assert (envelope.response_topic, envelope.correlation_data) == ("shop/replies/7", b"req-42")
    # Correlation Data without a Response Topic is never used: not kept.
    assert GUARD.check(message(None, b"req-42")).correlation_data is None


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("", "response_topic: is empty"),
        ("x/#", "response_topic: contains a wildcard '#'"),
        ("x/+/y", "response_topic: contains a wildcard '+'"),
        ("x/\x00", "response_topic: contains a NUL character"),
        ("$SYS/x", "response_topic: starts with '$' (reserved for the broker)"),
        ("$share/g/x", "response_topic: starts with '$'"),
        ("x/\x1b[2J", "response_topic: contains a control character U+001B"),
        ("r/" + "é" * 128, "response_topic: 258 bytes, over the 256-byte limit"),
        ("sms/submit", "response_topic: inside the gateway's own topic tree (sms/submit)"),
        ("sms/submit/shop", "response_topic: inside the gateway's own topic tree (sms/submit)"),
        ("sms/status/other", "response_topic: inside the gateway's own topic tree (sms/status)"),
        ("sms/status", "response_topic: inside the gateway's own topic tree (sms/status)"),
        ("sms/inbound/viettel", "response_topic: inside the gateway's own topic tree"),
        ("sms/rejected", "response_topic: inside the gateway's own topic tree (sms/rejected)"),
        ("sms/cancel/shop", "response_topic: inside the gateway's own topic tree (sms/cancel)"),
        (
            "sms/status-unmatched",
            "response_topic: inside the gateway's own topic tree (sms/status-unmatched)",
        ),
    ],
)
def test_refused_response_topics_name_the_field_and_are_not_kept(topic: str, problem: str) -> None:
    envelope = GUARD.check(message(topic, b"c"))
    (found,) = envelope.problems
    assert found.startswith(problem), found
    assert (envelope.response_topic, envelope.correlation_data) == (None, None)


def test_limits_are_exact() -> None:
    longest = "r/" + "a" * (MAX_RESPONSE_TOPIC - 2)
    assert GUARD.check(message(longest)).problems == ()
    assert GUARD.check(message(longest + "a")).problems
    assert GUARD.check(message("r", b"c" * 256)).problems == ()
    envelope = GUARD.check(message("r", b"c" * 257))
    assert envelope.problems == (
        "correlation_data: 257 bytes, over the 256-byte limit (mqtt.max_correlation)",
    )
    assert (envelope.response_topic, envelope.correlation_data) == (None, None)
    # Near the gateway's topics but not inside them.
    for topic in ("sms/statuses", "sms", "sms/submitted/x", "other/sms/status"):
        assert GUARD.check(message(topic)).problems == (), topic


def test_response_prefixes_when_set() -> None:
    guard = EnvelopeGuard(MqttConfig(response_prefixes=("shop/replies", "crm")))
    for topic in ("shop/replies", "shop/replies/7", "crm/a/b"):
        assert guard.check(message(topic)).problems == (), topic
    for topic in ("shop/repliesX", "shop", "other/replies", "crmx"):
        (found,) = guard.check(message(topic)).problems
        assert found == "response_topic: not under mqtt.response_prefixes (shop/replies, crm)"


def test_own_topics_follow_the_config() -> None:
    config = replace(
        MqttConfig(),
        status_topic="gw/events",
        submit_topic="gw/jobs",
        cancel_topic="gw/stop",
        consent_topic="gw/consent",
    )
    assert own_topics(config) == (
        "gw/jobs",
        "gw/events",
        "sms/inbound",
        "sms/rejected",
        "gw/stop",
        "gw/consent",
        "sms/reply",
        "gw/events-unmatched",
    )
    (found,) = EnvelopeGuard(config).check(message("gw/events/other")).problems
    assert found == "response_topic: inside the gateway's own topic tree (gw/events)"


def test_retained_is_refused_but_a_good_reply_address_is_kept() -> None:
    envelope = GUARD.check(message("shop/replies/7", b"c", retain=True))
    assert envelope.problems == (RETAINED,)
    assert RETAINED == "retained: jobs must not be published with retain"
    assert envelope.response_topic == "shop/replies/7"


def test_every_problem_is_listed() -> None:
    envelope = GUARD.check(message("x/#", b"c" * 300, retain=True))
    assert [p.split(":")[0] for p in envelope.problems] == [
        "response_topic",
        "correlation_data",
        "retained",
    ]
