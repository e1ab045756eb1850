"""gmqtt's private parts that :mod:`smppgw.mqtt` relies on: checked, then used here only.

:class:`GmqttClient` (PUBACK withheld, PUBACK reason codes read) and :class:`AckStorage`
(publish completion) are the two subclasses of gmqtt's classes; :class:`~smppgw.mqtt.client.
MqttClient` uses them and nothing else of gmqtt's internals but the read gate, the write
cork, the QoS 1 intake hook (:func:`dispatch_qos1`), the QoS 1 PUBLISH built here
(:func:`send_qos1_publish`) and the packets read handed to their handlers directly
(:func:`dispatch_direct`).

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
tests/mqtt/test_mqtt.py against a real broker.
"""

from __future__ import annotations

import asyncio
import inspect
import struct
import time
from collections.abc import Callable, Coroutine, Iterable
from functools import partial
from typing import Any, Final, cast

import gmqtt
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.mqtt.constants import MQTTCommands, PubAckReasonCode
from gmqtt.mqtt.handler import MqttPackageHandler
from gmqtt.mqtt.protocol import MQTTProtocol
from gmqtt.storage import PersistentStorage

__all__ = [
    "WITHHOLD",
    "AckStorage",
    "GmqttChanged",
    "GmqttClient",
    "check_gmqtt",
    "dispatch_direct",
    "dispatch_qos1",
    "gate_reads",
    "publish_properties",
    "qos1_publish_packet",
    "send_qos1_publish",
]

_VERSION = getattr(gmqtt, "__version__", "?")
#: Reason code our dispatcher returns when the PUBACK must NOT be sent. It has to be a valid
#: PUBACK code (gmqtt validates it) and is intercepted in ``GmqttClient`` before the wire.
WITHHOLD: Final = int(PubAckReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
_PUBACK: Final = int(MQTTCommands.PUBACK)


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
    # QoS 1 publishes built here (send_qos1_publish): the protocol's packet ids and writer.
    _reads(MQTTProtocol, "__init__", ("id_generator",))
    _method(MQTTProtocol, "write_data", ("data",))
    _reads(MQTTConnection, "publish", ("_protocol",))
    # Retained jobs: the retain flag handed to on_message, and the subscription options.
    _reads(MqttPackageHandler, "_handle_publish_packet", ("retain",))
    _method(gmqtt.Subscription, "__init__", ("retain_as_published", "retain_handling_options"))
    # Refused publishes: the PUBACK handler (looked up by name, through a per-command cache)
    # is wrapped to read the reason code gmqtt itself ignores.
    _method(MqttPackageHandler, "_handle_puback_packet", ("cmd", "packet"))
    _reads(MqttPackageHandler, "_handle_puback_packet", ("free_id", "_remove_message_from_queue"))
    _reads(gmqtt.Client, "_remove_message_from_queue", ("remove_message_by_mid",))
    # Packets handed to the handler directly (dispatch_direct): what gmqtt's path does.
    _reads(MQTTConnection, "put_package", ("current_connection", "_last_data_in"))
    _reads(MqttPackageHandler, "_handle_packet", ("__get_handler__", "_last_msg_in"))
    _reads(MqttPackageHandler, "__get_handler__", ("_handler_cache",))
    _reads(MqttPackageHandler, "__init__", ("_connection",))
    _attribute(handler, "_logger", "MqttPackageHandler")
    _instance(
        _attribute(handler, "_handler_cache", "MqttPackageHandler"),
        dict,
        "MqttPackageHandler._handler_cache",
    )


class AckStorage(PersistentStorage):  # type: ignore[misc]
    """gmqtt's in-flight QoS store, watched: a push is a publish, a removal its PUBACK."""

    def __init__(
        self,
        *,
        on_stored: Callable[[int], None],
        on_acknowledged: Callable[[int], None],
        on_discarded: Callable[[list[int]], None],
    ) -> None:
        super().__init__()
        self._on_stored = on_stored
        self._on_acknowledged = on_acknowledged
        self._on_discarded = on_discarded

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self._on_stored(mid)

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        self._on_acknowledged(mid)

    def clear(self) -> None:
        mids = list(self._messages)
        super().clear()
        self._on_discarded(mids)

    def forget(self) -> None:
        """Drop every stored packet so gmqtt replays none; their publishers were told."""
        super().clear()

    @property
    def size(self) -> int:
        return len(self._messages)

    @property
    def mids(self) -> set[int]:
        return set(self._messages)


class GmqttClient(gmqtt.Client):  # type: ignore[misc]
    """gmqtt's client with two changes: a PUBACK carrying ``WITHHOLD`` is not sent, and
    the reason code of each PUBACK received reaches ``on_refused`` when it is a failure.

    Every PUBACK gmqtt sends goes through ``_send_command_with_mid`` (the package handler
    holds this bound method), so this is the single place to stop one. Every PUBACK it
    receives goes to its package handler's ``_handle_puback_packet`` (looked up by name on
    the first PUBACK), which reads the packet id only, frees it and removes the stored
    packet; the handler installed here does the same and reads the reason code first, so
    the refusal is known when ``AckStorage.remove_message_by_mid`` runs.
    """

    def __init__(self, *args: Any, on_refused: Callable[[int, int], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        handler = self._package_handler
        original = getattr(handler, "_handle_puback_packet", None)
        if original is None:  # a gmqtt upgrade renamed it: refusals would go unseen
            raise GmqttChanged("MqttPackageHandler._handle_puback_packet")

        free_id = handler.id_generator.free_id
        storage = self._persistent_storage

        def handle_puback(cmd: int, packet: bytes) -> None:
            if len(packet) < 2:  # malformed: gmqtt's own handler fails on it as before
                original(cmd, packet)
                return
            mid = packet[0] << 8 | packet[1]
            # MQTT 5 section 3.4.2.1: no reason code byte means Success.
            if len(packet) > 2 and packet[2] >= 0x80:
                on_refused(mid, packet[2])
            # What gmqtt's handler does after reading the id (checked by check_gmqtt),
            # without its two debug log calls and the client's callback in between.
            free_id(mid)
            storage.remove_message_by_mid(mid)

        handler._handle_puback_packet = handle_puback
        handler._handler_cache.pop(int(MQTTCommands.PUBACK), None)

    def _send_command_with_mid(self, cmd: int, mid: int, dup: bool, reason_code: int = 0) -> None:
        if cmd == _PUBACK and reason_code == WITHHOLD:
            return
        super()._send_command_with_mid(cmd, mid, dup, reason_code=reason_code)


#: ``on_message`` as gmqtt calls it: ``(client, topic, payload, qos, properties)`` → the
#: PUBACK reason code (never raises; :data:`WITHHOLD`: send none).
Dispatch = Callable[[Any, str, bytes, int, dict[str, Any]], Coroutine[Any, Any, int]]


def dispatch_qos1(
    client: gmqtt.Client, dispatch: Dispatch, running: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """Run ``dispatch`` for each incoming QoS 1 PUBLISH of ``client`` as a task (on the
    loop ``running`` answers) and send its PUBACK with the code it returns, without
    gmqtt's generic path around it.

    gmqtt's ``_handle_qos_1_publish_packet`` does the same through
    ``run_coroutine_or_function`` (``inspect.iscoroutinefunction`` of the callback,
    ``asyncio.ensure_future``'s checks) and a done-callback that validates the reason code
    against every member of ``PubRecReasonCode`` before ``_send_puback``: ~3 % of the event
    loop's CPU per job in the end-to-end benchmark (py-spy, issue 13), for a callback that
    is always our coroutine function and codes that are always valid (success or
    ``WITHHOLD``). The package handler looks the method up on itself, so an instance
    attribute replaces it (as for ``_handle_puback_packet``). QoS 0 and 2 keep gmqtt's
    path through ``on_message``."""
    handler = _attribute(client, "_package_handler", "Client")
    _method(
        MqttPackageHandler,
        "_handle_qos_1_publish_packet",
        ("mid", "packet", "print_topic", "properties"),
    )
    _reads(MqttPackageHandler, "_handle_publish_packet", ("_handle_qos_1_publish_packet",))
    send_puback = _method(MqttPackageHandler, "_send_puback", ("mid", "reason_code"))
    if not inspect.iscoroutinefunction(dispatch):
        raise TypeError("dispatch_qos1 needs a coroutine function")

    def acknowledge(mid: int, task: asyncio.Task[int]) -> None:
        if not task.cancelled():  # cancelled (shutdown): no PUBACK, it is redelivered
            send_puback(handler, mid, reason_code=task.result())

    def handle_qos1(mid: int, packet: bytes, print_topic: str, properties: dict[str, Any]) -> None:
        task = running().create_task(dispatch(client, print_topic, packet, 1, properties))
        task.add_done_callback(partial(acknowledge, mid))

    handler._handle_qos_1_publish_packet = handle_qos1


#: First byte of a QoS 1 PUBLISH (not a duplicate), by its retain flag.
_PUBLISH_QOS1: Final = (
    bytes((int(MQTTCommands.PUBLISH) | 0x02,)),
    bytes((int(MQTTCommands.PUBLISH) | 0x03,)),
)
#: MQTT's largest Remaining Length (four variable-byte-integer bytes).
_MAX_REMAINING: Final = 268_435_455
#: Property identifier of Correlation Data (MQTT 5 section 3.3.2.3.6; binary data).
_CORRELATION_DATA: Final = b"\x09"
_NO_PROPERTIES: Final = b"\x00"
_u16: Final = struct.Struct("!H").pack


def _variable_byte_integer(value: int) -> bytes:
    """MQTT's variable byte integer (section 1.5.5), as gmqtt's ``pack_variable_byte_integer``."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        value, digit = divmod(value, 0x80)
        if value > 0:
            digit |= 0x80
        out.append(digit)
        if value <= 0:
            return bytes(out)


def publish_properties(correlation_data: bytes | None) -> bytes:
    """The property block (its length first) of a PUBLISH carrying ``correlation_data``,
    the only property the gateway's publishes have; as gmqtt builds it."""
    if correlation_data is None:
        return _NO_PROPERTIES
    body = b"".join((_CORRELATION_DATA, _u16(len(correlation_data)), correlation_data))
    return _variable_byte_integer(len(body)) + body


def qos1_publish_packet(
    topic: str, mid: int, properties: bytes, payload: bytes, retain: bool = False
) -> bytes:
    """The QoS 1 PUBLISH packet gmqtt's ``PublishPacket.build_package`` builds (MQTT 5,
    not a duplicate), as one ``bytes.join``."""
    topic_bytes = topic.encode("utf-8", errors="replace")
    if len(payload) > _MAX_REMAINING:
        raise ValueError("Payload too large.")
    remaining = 4 + len(topic_bytes) + len(properties) + len(payload)
    return b"".join(
        (
            _PUBLISH_QOS1[retain],
            _variable_byte_integer(remaining),
            _u16(len(topic_bytes)),
            topic_bytes,
            _u16(mid),
            properties,
            payload,
        )
    )


def send_qos1_publish(
    client: gmqtt.Client, topic: str, payload: bytes, properties: bytes, retain: bool = False
) -> int:
    """Write a QoS 1 PUBLISH on ``client``'s connection and store it for its PUBACK, as
    ``gmqtt.Client.publish(gmqtt.Message(topic, payload, qos=1, retain=retain, ...))``
    does; returns its packet id. ``properties`` comes from :func:`publish_properties`.

    gmqtt builds the packet from a ``Message`` (str/list/number payload checks, a
    properties dict looked up by name and dumped into bytearrays piece by piece, two debug
    log calls): two PUBLISHes a job, ~3 % of the event loop's CPU in the end-to-end
    benchmark (issue 13). Here it is one ``bytes.join``; the packet is byte for byte the
    one gmqtt builds (tests/mqtt/test_gmqtt_packets.py), and the same internals take it
    (the packet id generator, ``write_data``, the in-flight store), so Receive Maximum,
    PUBACK matching and replay on reconnect are gmqtt's as before."""
    protocol = client._connection._protocol
    mid: int = protocol.id_generator.next_id()
    packet = qos1_publish_packet(topic, mid, properties, payload, retain)
    protocol.write_data(packet)
    client._persistent_storage.push_message(mid, packet)
    return mid


def gate_reads(client: gmqtt.Client, gate: asyncio.Event) -> str | None:
    """Make the read loop of ``client``'s current connection wait for ``gate`` before each
    read, so that a full handler window stops reading the socket (see
    ``MqttClient._gate_reads``). Returns None when done (or already done for this
    connection), else the type name of the connection that lacks the internals."""
    connection = getattr(client, "_connection", None)
    protocol = getattr(connection, "_protocol", None)
    original = getattr(protocol, "read", None)
    if protocol is None or original is None:
        return type(connection).__name__
    if getattr(original, "_smppgw_gated", False):
        return None

    async def gated_read(n: int = -1) -> bytes:
        await gate.wait()
        data: bytes = await original(n)
        return data

    gated_read._smppgw_gated = True  # type: ignore[attr-defined]
    protocol.read = gated_read
    return None


class CorkedTransport:
    """A connection's transport whose writes of one event-loop turn go out in two.

    gmqtt writes every packet on its own (``transport.write``: one ``send`` system call
    each): the PUBACKs of a committed intake batch, the PUBLISHes of an outbox round. Here
    the first packet of a turn is written at once (a lone packet is never held back) and
    the rest are joined and written at the end of the turn: two calls instead of one per
    packet. Order is kept; a graceful ``close`` writes what is queued first, ``abort``
    drops it (as the transport's own buffer would be). Everything else is the real
    transport's.
    """

    def __init__(self, real: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.real = real
        self._loop = loop
        #: Packets queued after the turn's first write; None: nothing written this turn.
        self._out: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        out = self._out
        if out is not None:
            out.append(data)
            return
        self._out = []
        self._loop.call_soon(self.flush)
        self.real.write(data)

    def flush(self) -> None:
        """Write what this turn queued (nothing once the connection is closing)."""
        out = self._out
        self._out = None
        if out and not self.real.is_closing():
            self.real.write(out[0] if len(out) == 1 else b"".join(out))

    def is_closing(self) -> bool:
        # Asked several times a job (gmqtt's is_connected, via MqttClient.connected): a
        # method of its own, not a trip through __getattr__ each time.
        return self.real.is_closing()

    def close(self) -> None:
        self.flush()
        self.real.close()

    def abort(self) -> None:
        if self._out:
            self._out = []
        self.real.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def dispatch_direct(client: gmqtt.Client) -> str | None:
    """Hand each packet ``client``'s current connection reads straight to the package
    handler's method for its type, once gmqtt has looked that method up.

    gmqtt's way there (``MQTTConnection.put_package`` → ``MqttPackageHandler.__call__``
    → ``_handle_packet`` → ``__get_handler__``) formats ``hex(cmd)`` for a debug line and
    goes through three frames for every packet: three packets in a job (two PUBACKs, one
    PUBLISH). This does what they do (drop a superseded connection's packets, the
    keep-alive and last-message clocks, an exception logged rather than raised), from
    the handler's own per-type cache, so the handlers installed by :class:`GmqttClient`
    and :func:`dispatch_qos1` are the ones called; a type not yet in the cache takes
    gmqtt's path, which fills it. Returns None when done (or already done for this
    connection), else the type name of the connection that lacks the internals."""
    connection = getattr(client, "_connection", None)
    original = getattr(connection, "put_package", None)
    handler = getattr(client, "_package_handler", None)
    cache = getattr(handler, "_handler_cache", None)
    if original is None or not isinstance(cache, dict):
        return type(connection).__name__
    if getattr(original, "_smppgw_direct", False):
        return None
    monotonic = time.monotonic
    log_failure = handler._logger.exception  # type: ignore[union-attr]

    def put_package(package: Any) -> None:
        handle = cache.get(package.cmd & 0xF0)
        if handle is None or handler._connection is not connection:  # type: ignore[union-attr]
            original(package)  # gmqtt's path: fills the cache, drops a superseded one's
            return
        connection._last_data_in = monotonic()
        try:
            handle(package.cmd, package.data)
            handler._last_msg_in = monotonic()  # type: ignore[union-attr]
        except Exception:
            log_failure("[MqttPackageHandler] error handling package")

    put_package._smppgw_direct = True  # type: ignore[attr-defined]
    connection.put_package = put_package  # type: ignore[union-attr]
    return None


def cork_writes(client: gmqtt.Client) -> str | None:
    """Put a :class:`CorkedTransport` under ``client``'s current connection (its protocol
    and its connection object both write). Returns None when done (or already done for
    this connection), else the type name of the connection that lacks the internals."""
    connection = getattr(client, "_connection", None)
    protocol = getattr(connection, "_protocol", None)
    transport: object = getattr(protocol, "_transport", None)
    if isinstance(transport, CorkedTransport):
        return None
    if transport is None or getattr(connection, "_transport", None) is not transport:
        return type(connection).__name__
    # uvloop's transports are not asyncio.Transport subclasses: a cast, not a check.
    corked = CorkedTransport(cast(asyncio.Transport, transport), asyncio.get_running_loop())
    protocol._transport = corked  # type: ignore[union-attr]
    connection._transport = corked  # type: ignore[union-attr]
    return None
