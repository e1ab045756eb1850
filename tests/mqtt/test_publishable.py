"""Checks before an event is published: MQTT 5 topic-name rules (plus what mosquitto
refuses by closing the connection) and the exact size of the PUBLISH packet."""

from __future__ import annotations

import gmqtt
import pytest
from gmqtt.mqtt.package import PublishPacket
from gmqtt.mqtt.utils import IdGenerator
from hypothesis import given, settings
from hypothesis import strategies as st

from smppgw.mqtt.publishable import (
    _bad_character,
    _scan,
    publish_size,
    size_problem,
    topic_name_problem,
)


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("", "topic is empty"),
        ("x/#", "wildcard '#'"),
        ("a/+/b", "wildcard '+'"),
        ("$SYS/broker", "starts with '$'"),
        ("a\x00b", "NUL character"),
        ("a\x01b", "control character U+0001"),
        ("a\nb", "control character U+000A"),
        ("a\x85b", "control character U+0085"),
        ("a\ud800b", "unpaired surrogate U+D800"),
        ("a\ufffeb", "non-character U+FFFE"),
        ("a\ufdd0b", "non-character U+FDD0"),
        ("é" * 40_000, "80000 bytes, more than MQTT's 65535"),
    ],
)
def test_topics_the_broker_would_disconnect_for(topic: str, problem: str) -> None:
    found = topic_name_problem(topic)
    assert found is not None and problem in found


@pytest.mark.parametrize(
    "topic", ["sms/status/order-1984", "a", "/", "a//b", "shop/trả lời/42", "x" * 65535]
)
def test_valid_topic_names(topic: str) -> None:
    assert topic_name_problem(topic) is None


class _Protocol:
    proto_ver = 5
    id_generator = IdGenerator(max=100)


@pytest.mark.parametrize(
    ("topic", "payload", "correlation"),
    [
        ("a/b", b"x" * 10, None),
        ("é/x", b"y" * 300, b"c" * 200),
        ("t", b"z" * 20_000, b""),
        ("big", b"q" * 2_100_000, b"k" * 65535),
    ],
)
def test_publish_size_is_what_gmqtt_sends(
    topic: str, payload: bytes, correlation: bytes | None
) -> None:
    properties = {} if correlation is None else {"correlation_data": correlation}
    message = gmqtt.Message(topic, payload, qos=1, **properties)
    _, packet = PublishPacket.build_package(message, _Protocol)
    assert publish_size(topic, payload, correlation) == len(packet)


def test_size_against_the_broker_maximum() -> None:
    size = publish_size("t", b"x" * 100, None)
    assert size_problem("t", b"x" * 100, None, size) is None
    found = size_problem("t", b"x" * 100, None, size - 1)
    assert found == f"packet of {size} bytes, more than the broker's maximum of {size - 1}"
    assert size_problem("t", b"x" * 100, None, None) is None  # no limit sent: MQTT's own
    assert "correlation data" in str(size_problem("t", b"", b"c" * 70_000, None))


@settings(max_examples=500, deadline=None)
@given(
    topic=st.text(max_size=20)
    | st.text(st.characters(min_codepoint=0, max_codepoint=0xA0), max_size=20)
    | st.text("abc/+#$\x00\x1f\x7f\x9f\ufdd0\ufffe", max_size=8)
)
def test_fast_check_of_printable_ascii_gives_the_per_character_answer(topic: str) -> None:
    assert _bad_character(topic) == _scan(topic)
