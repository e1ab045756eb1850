"""The QoS 1 PUBLISH smppgw builds itself (``mqtt/_gmqtt.py``) is byte for byte the one
gmqtt's own ``PublishPacket.build_package`` builds, for any topic, payload, packet id,
correlation data and retain flag; and gmqtt's parser reads it back as sent."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import gmqtt
from gmqtt.mqtt.constants import MQTTv50
from gmqtt.mqtt.handler import MqttPackageHandler
from gmqtt.mqtt.package import PublishPacket
from gmqtt.mqtt.utils import unpack_variable_byte_integer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smppgw.mqtt._gmqtt import publish_properties, qos1_publish_packet

topics = st.text(min_size=1, max_size=300)
payloads = st.binary(max_size=70_000)
correlations = st.none() | st.binary(max_size=300)
#: What gmqtt's property parser reads of its handler: the protocol version only.
HANDLER = SimpleNamespace(_connection_state=SimpleNamespace(protocol_version=MQTTv50))
mids = st.integers(min_value=1, max_value=0xFFFF)


def gmqtt_packet(
    topic: str, mid: int, payload: bytes, correlation: bytes | None, retain: bool
) -> bytes:
    """What gmqtt builds for ``Client.publish(Message(..., qos=1))`` with packet id ``mid``."""
    properties = {} if correlation is None else {"correlation_data": correlation}
    message = gmqtt.Message(topic, payload, qos=1, retain=retain, **properties)
    protocol = SimpleNamespace(proto_ver=MQTTv50, id_generator=SimpleNamespace(next_id=lambda: mid))
    built_mid, packet = PublishPacket.build_package(message, protocol)
    assert built_mid == mid
    return bytes(packet)


@settings(max_examples=400, deadline=None)
@given(topic=topics, mid=mids, payload=payloads, correlation=correlations, retain=st.booleans())
@example(topic="t", mid=1, payload=b"", correlation=None, retain=False)
@example(topic="a/\udcff/\u00e9", mid=0xFFFF, payload=b"x" * 127, correlation=b"", retain=True)
@example(topic="j" * 120, mid=2, payload=b"y" * 16_384, correlation=b"c" * 200, retain=False)
def test_the_publish_packet_is_gmqtts_byte_for_byte(
    topic: str, mid: int, payload: bytes, correlation: bytes | None, retain: bool
) -> None:
    ours = qos1_publish_packet(topic, mid, publish_properties(correlation), payload, retain)
    assert ours == gmqtt_packet(topic, mid, payload, correlation, retain)


@settings(max_examples=200, deadline=None)
@given(topic=topics, mid=mids, payload=payloads, correlation=correlations)
def test_gmqtts_parser_reads_back_what_was_built(
    topic: str, mid: int, payload: bytes, correlation: bytes | None
) -> None:
    packet = qos1_publish_packet(topic, mid, publish_properties(correlation), payload)
    assert packet[0] == 0x32  # PUBLISH, QoS 1, not dup, not retained
    remaining, body = unpack_variable_byte_integer(packet[1:])
    assert remaining == len(body)
    (topic_length,) = struct.unpack("!H", body[:2])
    assert body[2 : 2 + topic_length] == topic.encode("utf-8", errors="replace")
    (read_mid,) = struct.unpack("!H", body[2 + topic_length : 4 + topic_length])
    assert read_mid == mid
    properties, rest = MqttPackageHandler._parse_properties(HANDLER, body[4 + topic_length :])
    assert rest == payload
    if correlation is None:
        assert properties == {}
    else:
        assert properties == {"correlation_data": [correlation]}
