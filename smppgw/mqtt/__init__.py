"""MQTT: the gateway's client (the only gmqtt user), the job/event wire schema, publish
checks and the mosquitto launcher for tools and tests.

The public face is :class:`MqttClient` and its message and error types, re-exported here;
gmqtt's internals stay in the private :mod:`smppgw.mqtt._gmqtt`.
"""

from smppgw.mqtt.client import (
    Declined,
    Message,
    MqttClient,
    MqttError,
    MqttUnavailable,
    PublishLost,
    PublishRefused,
)

__all__ = [
    "Declined",
    "Message",
    "MqttClient",
    "MqttError",
    "MqttUnavailable",
    "PublishLost",
    "PublishRefused",
]
