"""Can the broker take this event? Checked before the outbox publishes it.

An event the broker cannot take must never reach the wire: mosquitto answers a PUBLISH to
``x/#`` or to a topic with a control character by closing the connection (DISCONNECT 0x82
protocol error, 0x81 malformed packet), and one larger than its Maximum Packet Size with
0x95. Every event in flight then fails with it, so one such event in the outbox would stop
all the others. These checks find those events without asking the broker; what they
cannot know (ACLs, quotas) the broker reports per event in its PUBACK.

The topic rules are MQTT 5's for a topic *name* (section 4.7 and 1.5.4), plus the
characters mosquitto refuses although the spec only says "should not": control characters
and Unicode non-characters.
"""

from __future__ import annotations

from typing import Final

#: Largest MQTT packet at all: 1 byte of fixed header, 4 of Remaining Length, 268,435,455.
MQTT_MAX_PACKET: Final = 1 + 4 + 268_435_455
#: Largest UTF-8 string in MQTT (two-byte length prefix).
_MAX_STRING: Final = 65535
#: Correlation Data property: identifier byte plus two-byte length.
_CORRELATION_OVERHEAD: Final = 1 + 2


def _bad_character(topic: str) -> str | None:
    """The first character of ``topic`` mosquitto refuses, described; None when none is.

    Printable ASCII without wildcards (every topic smppgw builds) is recognised by three
    scans in C; anything else is looked at character by character (:func:`_scan`).
    """
    if topic.isascii() and topic.isprintable() and "+" not in topic and "#" not in topic:
        return None
    return _scan(topic)


def _scan(topic: str) -> str | None:
    """:func:`_bad_character` one character at a time (the same answer for every topic)."""
    for char in topic:
        point = ord(char)
        if char in "+#":
            return f"wildcard {char!r}"
        if point == 0:
            return "NUL character"
        if point < 0x20 or 0x7F <= point <= 0x9F:
            return f"control character U+{point:04X}"
        if 0xD800 <= point <= 0xDFFF:
            return f"unpaired surrogate U+{point:04X} (not UTF-8)"
        if 0xFDD0 <= point <= 0xFDEF or point & 0xFFFE == 0xFFFE:
            return f"Unicode non-character U+{point:04X}"
    return None


def topic_name_problem(topic: str) -> str | None:
    """Why ``topic`` cannot be published to, or None when it is a valid topic name."""
    if not topic:
        return "topic is empty"
    if topic.startswith("$"):
        return "topic starts with '$' (reserved for the broker)"
    bad = _bad_character(topic)
    if bad is not None:
        return f"topic contains a {bad}"
    size = len(topic.encode("utf-8"))
    if size > _MAX_STRING:
        return f"topic is {size} bytes, more than MQTT's {_MAX_STRING}"
    return None


def _varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def publish_size(topic: str, payload: bytes, correlation_data: bytes | None) -> int:
    """Bytes of the QoS 1 MQTT 5 PUBLISH packet carrying this event (as gmqtt builds it:
    topic, packet id, properties, payload; Correlation Data the only property)."""
    properties = 0 if correlation_data is None else _CORRELATION_OVERHEAD + len(correlation_data)
    remaining = 2 + len(topic.encode("utf-8")) + 2 + _varint_size(properties) + properties
    remaining += len(payload)
    return 1 + _varint_size(remaining) + remaining


def size_problem(
    topic: str, payload: bytes, correlation_data: bytes | None, limit: int | None
) -> str | None:
    """Why the packet is too large for the broker (its CONNACK Maximum Packet Size, else
    MQTT's own limit), or None. Call after :func:`topic_name_problem` passed."""
    maximum = MQTT_MAX_PACKET if limit is None else min(limit, MQTT_MAX_PACKET)
    if correlation_data is not None and len(correlation_data) > _MAX_STRING:
        return f"correlation data is {len(correlation_data)} bytes, more than {_MAX_STRING}"
    size = publish_size(topic, payload, correlation_data)
    if size > maximum:
        return f"packet of {size} bytes, more than the broker's maximum of {maximum}"
    return None
