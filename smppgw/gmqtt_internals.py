"""gmqtt's private parts that :mod:`smppgw.mqtt` relies on, checked before they are used.

The gateway's MQTT guarantees (PUBACK only once a job is durable, a publish completes on
its PUBACK, intake paced by TCP back-pressure, packet ids reconciled on reconnect, retained
jobs recognised) are built on gmqtt internals, not on its public API. An upgrade that
renames one would not fail: ``getattr(..., None)`` would quietly skip the flow control, a
hook would never be called, and the gateway would run on, acknowledging jobs before they
are stored or reading a million jobs into memory. So each internal is checked when the
client is built, and a missing or changed one stops the gateway with its name::

    gmqtt 0.9.0 changed: MQTTProtocol.read missing; smppgw's flow control needs it

The checks are of shape (the attribute exists, is callable with these parameters, is
read where expected), which is what a rename or a refactor breaks; behaviour is covered by
tests/test_mqtt.py against a real broker.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import gmqtt
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.mqtt.handler import MqttPackageHandler
from gmqtt.mqtt.protocol import MQTTProtocol
from gmqtt.storage import PersistentStorage

__all__ = ["GmqttChanged", "check_gmqtt"]

_VERSION = getattr(gmqtt, "__version__", "?")


class GmqttChanged(RuntimeError):
    """The installed gmqtt lacks an internal that smppgw's MQTT flow control needs."""

    def __init__(self, what: str, problem: str = "missing") -> None:
        self.what = what
        super().__init__(
            f"gmqtt {_VERSION} changed: {what} {problem}; smppgw's flow control needs it "
            "(pin the gmqtt version smppgw was tested with)"
        )


def _attribute(owner: object, name: str, label: str) -> Any:
    if not hasattr(owner, name):
        raise GmqttChanged(f"{label}.{name}")
    return getattr(owner, name)


def _method(owner: type, name: str, parameters: Iterable[str], *, coroutine: bool = False) -> Any:
    """``owner.name`` is a function taking (at least) ``parameters``."""
    label = f"{owner.__name__}.{name}"
    function = _attribute(owner, name, owner.__name__)
    if not callable(function):
        raise GmqttChanged(label, "is not a method")
    if coroutine and not inspect.iscoroutinefunction(function):
        raise GmqttChanged(label, "is not a coroutine function")
    accepted = inspect.signature(function).parameters
    for parameter in parameters:
        if parameter not in accepted:
            raise GmqttChanged(label, f"has no parameter {parameter!r}")
    return function


def _reads(owner: type, method: str, names: Iterable[str]) -> None:
    """``owner.method``'s code reads each of ``names`` (an attribute or a string constant)."""
    label = f"{owner.__name__}.{method}"
    code = getattr(_attribute(owner, method, owner.__name__), "__code__", None)
    if code is None:
        raise GmqttChanged(label, "is not plain Python code")
    seen = set(code.co_names) | {c for c in code.co_consts if isinstance(c, str)}
    for name in names:
        if name not in seen:
            raise GmqttChanged(label, f"no longer uses {name!r}")


def _instance(value: object, kind: type | tuple[type, ...], label: str) -> None:
    if not isinstance(value, kind):
        raise GmqttChanged(label, f"is {type(value).__name__}, not the expected shape")


def check_gmqtt(client: gmqtt.Client, storage: PersistentStorage, on_puback: Any) -> None:
    """Raise :class:`GmqttChanged` unless every internal smppgw uses is there.

    ``client`` is the (subclassed) gmqtt client just built, ``storage`` the in-flight store
    given to it and ``on_puback`` our ``_send_command_with_mid`` override (unbound)."""
    # PUBACK withheld: every PUBACK goes through Client._send_command_with_mid, which the
    # package handler holds as a bound method.
    _method(gmqtt.Client, "_send_command_with_mid", ("cmd", "mid", "dup", "reason_code"))
    handler = _attribute(client, "_package_handler", "Client")
    _instance(handler, MqttPackageHandler, "Client._package_handler")
    callback = _attribute(handler, "_send_command_with_mid_callback", "MqttPackageHandler")
    if getattr(callback, "__func__", None) is not on_puback:
        raise GmqttChanged("MqttPackageHandler._send_command_with_mid_callback", "is not ours")
    if _attribute(handler, "_optimistic_acknowledgement", "MqttPackageHandler") is not False:
        raise GmqttChanged("MqttPackageHandler._optimistic_acknowledgement", "is not False")
    # Publish completion and the Receive Maximum window: the in-flight store's hooks.
    if _attribute(client, "_persistent_storage", "Client") is not storage:
        raise GmqttChanged("Client._persistent_storage", "is not the storage given")
    _method(PersistentStorage, "push_message", ("mid", "raw_package"))
    _method(PersistentStorage, "remove_message_by_mid", ("mid",))
    _method(PersistentStorage, "clear", ())
    _instance(_attribute(storage, "_messages", "PersistentStorage"), dict, "_messages")
    _reads(gmqtt.Client, "publish", ("push_message",))
    # CONNACK's Receive Maximum and the packet ids to reconcile on reconnect.
    _instance(
        _attribute(handler, "_connack_properties", "MqttPackageHandler"),
        dict,
        "MqttPackageHandler._connack_properties",
    )
    generator = _attribute(handler, "id_generator", "MqttPackageHandler")
    _instance(_attribute(generator, "_used_ids", "IdGenerator"), set, "IdGenerator._used_ids")
    # Intake paced by TCP: the read loop of the connection's protocol, gated.
    _attribute(client, "_connection", "Client")
    _reads(MQTTConnection, "__init__", ("_protocol",))
    _method(MQTTProtocol, "read", ("n",), coroutine=True)
    _reads(MQTTProtocol, "_read_loop", ("read",))
    # Retained jobs: the retain flag handed to on_message, and the subscription options.
    _reads(MqttPackageHandler, "_handle_publish_packet", ("retain",))
    _method(gmqtt.Subscription, "__init__", ("retain_as_published", "retain_handling_options"))
    # Refused publishes: the PUBACK handler (looked up by name, through a per-command cache)
    # is wrapped to read the reason code gmqtt itself ignores.
    _method(MqttPackageHandler, "_handle_puback_packet", ("cmd", "packet"))
    _instance(
        _attribute(handler, "_handler_cache", "MqttPackageHandler"),
        dict,
        "MqttPackageHandler._handler_cache",
    )
