"""MQTT for the gateway: the job intake subscription and the QoS 1 event publisher.

This is the only module that uses gmqtt (chosen by measurement, see README's "Why these
libraries"; the internals it relies on are checked by :mod:`smppgw.mqtt._gmqtt` when a
client is built); the rest of the gateway sees :class:`MqttClient`, :class:`Message` and
:class:`MqttUnavailable`.

What the gateway needs from MQTT, and how gmqtt 0.8.0 is made to give it (each point was
read in gmqtt's source, not assumed):

* **PUBACK only after the job is durable.** With ``optimistic_acknowledgement=False`` gmqtt
  runs an ``async`` on_message as a task (``asyncio.ensure_future``) and sends the PUBACK
  from the task's done-callback with the reason code the coroutine returned (for QoS 1,
  :func:`~smppgw.mqtt._gmqtt.dispatch_qos1` does the same without gmqtt's generic checks
  around it). Handlers
  therefore run concurrently, which the store's group commit relies on. If the handler
  raises, gmqtt sends nothing (``f.result()`` raises inside its callback) but logs noise,
  so :meth:`MqttClient._dispatch` never raises: it returns a reserved reason code that our
  ``_send_command_with_mid`` override swallows instead of sending.
* **Redelivery of what was not acknowledged.** MQTT 5 brokers redeliver an unacknowledged
  QoS 1 message only on a new connection of the same session. So a failed handler drops the
  connection (gmqtt reconnects with ``clean_start`` false), and a handler that finishes
  after its connection was lost withholds its PUBACK: on the new connection the broker has
  resent the message under the same packet id (it will be handled again and deduplicated
  by job id), and a late PUBACK for that id could acknowledge a *different* message the
  broker has since given the id.
* **Publish completion = PUBACK.** gmqtt's ``publish()`` neither returns the packet id nor
  waits; it pushes the packet into its ``persistent_storage`` keyed by packet id and removes
  it on PUBACK. :class:`~smppgw.mqtt._gmqtt.AckStorage` watches both to resolve a future
  per publish.
* **Receive Maximum.** gmqtt raises ``OverflowError`` once every packet id allowed by the
  broker's CONNACK Receive Maximum is taken (ids ``1 .. max-1``, SUBSCRIBE included), instead
  of queueing. Publishes wait here for a slot; the window is ``receive_maximum - 1`` minus one
  id reserved per subscription.
* **Broker away.** A publish while disconnected raises :class:`MqttUnavailable` at once, and
  publishes waiting for their PUBACK when the connection drops fail with :class:`PublishLost`,
  so the caller commits the event to the store's outbox instead of holding an SMSC's
  deliver_sm_resp for the length of a broker outage. gmqtt replays those packets on reconnect
  when the session survived, so an event may be delivered twice: at-least-once, never lost.
  With ``replay_inflight=False`` (the gateway: its outbox publishes again from the store
  whatever failed) they are dropped at the disconnect instead, so that a packet the broker
  disconnects for is not resent by gmqtt on every reconnect, out of the outbox's control.
* **PUBACK reason codes.** gmqtt ignores the reason code of a PUBACK (it frees the id as for
  a success); our ``GmqttClient`` (:mod:`smppgw.mqtt._gmqtt`) reads it first, and a code of
  0x80 or more (not authorized, quota exceeded, ...) fails that publish with
  :class:`PublishRefused`.
* **Persistent session.** ``clean_start`` false plus a Session Expiry Interval; when the
  broker reports no session on CONNACK (it lost it), the subscriptions are sent again.
  gmqtt does not resubscribe by itself, and it leaks the packet ids of publishes it discards
  with a lost session, so ids are reconciled with its in-flight store on every CONNACK.
* **Oversized jobs never reach us.** CONNECT carries a Maximum Packet Size (the largest job
  payload, Correlation Data and headers allowed, :func:`max_packet_size`): the broker drops a
  bigger PUBLISH for this client instead of sending it, since gmqtt reads a whole packet into
  memory before anyone can look at its size.
* **No retained jobs.** Subscriptions use Retain Handling 2 (the broker does not replay
  retained messages when we subscribe) and Retain As Published, so a job published with the
  retain flag reaches the handler with ``Message.retain`` set, to be refused.
* **Reconnect forever.** gmqtt retries with a fixed ``reconnect_delay``; a small supervisor
  doubles that delay while the broker stays away (``reconnect_min`` .. ``reconnect_max``).
  If the broker is down when the gateway starts, the first connection is retried in the
  background the same way; nothing is raised because the broker is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import gmqtt
import structlog
from gmqtt.mqtt.constants import UNLIMITED_RECONNECTS, MQTTv50, PubAckReasonCode

from smppgw.aio import RunningLoop
from smppgw.config import MqttConfig
from smppgw.mqtt._gmqtt import (
    WITHHOLD,
    AckStorage,
    GmqttClient,
    check_gmqtt,
    cork_writes,
    dispatch_direct,
    dispatch_qos1,
    gate_reads,
    publish_properties,
    send_qos1_publish,
)
from smppgw.tls import client_context

__all__ = [
    "Declined",
    "Message",
    "MqttClient",
    "MqttError",
    "MqttUnavailable",
    "PublishLost",
    "PublishRefused",
]

log = structlog.get_logger("smppgw.mqtt")

_SUCCESS: Final = int(PubAckReasonCode.SUCCESS)
#: Room in a job's PUBLISH besides its payload and Correlation Data: fixed header (5),
#: topic (the submit topic, plus a tenant level), packet id, properties length, a Response
#: Topic (at most 256 bytes are accepted) and any User Properties or Content Type a client
#: adds. What intake accepts fits in under 1 KiB; 16 KiB leaves a client's own properties
#: alone, and it is a quarter of the default ``max_payload``, not a memory risk.
PACKET_OVERHEAD: Final = 16 * 1024
#: MQTT's own ceiling: a Remaining Length of at most 268,435,455, plus the fixed header.
_MQTT_MAX_PACKET: Final = 268_435_455 + 5
#: Subscription option Retain Handling 2: send no retained messages at subscribe time.
_NO_RETAINED: Final = 2


#: PUBACK failure reason codes (MQTT 5 section 3.4.2.1; 0x95 is mosquitto's over
#: ``message_size_limit``, which it follows by closing the connection).
_PUBACK_FAILURES: Final = {
    0x80: "unspecified error",
    0x83: "implementation specific error",
    0x87: "not authorized",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
}


class MqttError(Exception):
    """The broker refused us (bad credentials, refused subscription, ...)."""


class MqttUnavailable(MqttError):
    """Not connected, or the connection was lost before the PUBACK: use the outbox."""


class Declined(Exception):
    """Raised by a message handler that will not take the message now (e.g. the gateway
    is stopping): like any failure, no PUBACK and the broker delivers it again, but an
    expected one, so it is logged without a traceback."""


class PublishLost(MqttUnavailable):
    """The publish was sent and the connection dropped before its PUBACK.

    Distinct from "never sent" because the publish may be why the broker closed the
    connection (the outbox looks for such an event, see ``smppgw.pipeline.outbox``)."""


class PublishRefused(MqttError):
    """The broker answered the publish with a PUBACK reason code of 0x80 or more.

    Publishing the same message again gets the same answer, so the caller gives up on it."""

    def __init__(self, reason_code: int) -> None:
        self.reason_code = reason_code
        name = _PUBACK_FAILURES.get(reason_code, "unknown reason")
        super().__init__(f"broker refused the publish: PUBACK 0x{reason_code:02x} ({name})")


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__
# (~2.4x the time), and one is built per job; nothing assigns to one after that.
@dataclass(slots=True)
class Message:
    """An incoming PUBLISH, with the MQTT 5 request/response properties the contract uses."""

    topic: str
    payload: bytes
    qos: int
    #: MQTT 5 Response Topic: where the job's status events are also published.
    response_topic: str | None
    #: MQTT 5 Correlation Data, echoed on every event sent to the Response Topic.
    correlation_data: bytes | None
    retain: bool


def max_packet_size(config: MqttConfig) -> int:
    """The MQTT 5 Maximum Packet Size we announce in CONNECT.

    The broker never sends us a bigger packet: it drops an oversized job for this client
    (mosquitto logs nothing about it at its default log level; ``message_size_limit`` on the
    broker refuses it from the publisher instead). Without it gmqtt buffers any packet
    whole, up to MQTT's 256 MB, before ``max_payload`` can be checked.
    """
    wanted = config.max_payload + config.max_correlation + PACKET_OVERHEAD
    return min(wanted, _MQTT_MAX_PACKET)


#: Returns what to await (the PUBACK goes once it is done); raising, at once or when
#: awaited, means no PUBACK. A plain function returning a coroutine saves a frame per job.
MessageHandler = Callable[[Message], Awaitable[object]]
ConnectionHandler = Callable[[bool], None]


def _first(properties: dict[str, Any], name: str) -> Any:
    """gmqtt parses every property into a list (``defaultdict(list)``)."""
    values = properties.get(name)
    if isinstance(values, list):
        return values[0] if values else None
    return values


@dataclass(slots=True)
class _Subscription:
    topic: str
    qos: int
    #: SUBACKed on the current session; False means (re)send it on the next CONNACK.
    acked: bool = False


class MqttClient:
    """One MQTT 5 connection with a persistent session: intake handler plus QoS 1 publisher.

    Use as ``async with MqttClient(config, on_message=handle) as mqtt: ...``. ``on_message``
    is awaited for every incoming message, many at a time; the message is acknowledged when
    it returns, and redelivered by the broker if it raises.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        on_message: MessageHandler | None = None,
        on_connection_change: ConnectionHandler | None = None,
        receive_maximum: int = 1000,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        connect_timeout: float = 10.0,
        drain_timeout: float = 5.0,
        replay_inflight: bool = True,
    ) -> None:
        """``receive_maximum`` bounds how many unacknowledged jobs the broker sends us (and so
        how many handlers run at once); ``drain_timeout`` is how long ``__aexit__`` lets
        running handlers finish so their PUBACKs still go out. ``replay_inflight=False``
        drops publishes in flight when the connection is lost instead of resending them on
        reconnect: for a caller that publishes again whatever failed (the outbox)."""
        if not 1 <= receive_maximum <= 65535:
            raise ValueError("receive_maximum must be in 1..65535")
        self._config = config
        self._on_message = on_message
        self._on_connection_change = on_connection_change
        self._receive_maximum = receive_maximum
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._connect_timeout = connect_timeout
        self._drain_timeout = drain_timeout
        self._replay_inflight = replay_inflight

        self._storage = AckStorage(
            on_stored=self._stored, on_acknowledged=self._acknowledged, on_discarded=self._discarded
        )
        self._gm = GmqttClient(
            config.client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            persistent_storage=self._storage,
            session_expiry_interval=int(config.session_expiry),
            receive_maximum=receive_maximum,
            maximum_packet_size=max_packet_size(config),
            on_refused=self._refused,
        )
        # Before anything relies on them: a gmqtt upgrade must fail here, by name.
        check_gmqtt(self._gm, self._storage, GmqttClient._send_command_with_mid)
        if config.username is not None:
            password = config.password.reveal() if config.password is not None else None
            self._gm.set_auth_credentials(config.username, password)
        self._gm.on_connect = self._handle_connect
        self._gm.on_disconnect = self._handle_disconnect
        self._gm.on_subscribe = self._handle_suback
        self._gm.on_message = self._dispatch  # QoS 0 and 2
        #: The loop this client runs on, asked of asyncio once (``smppgw.aio``).
        self._running = RunningLoop()
        dispatch_qos1(self._gm, self._dispatch, self._running)
        self._gm.reconnect_delay = reconnect_min
        self._gm.reconnect_retries = UNLIMITED_RECONNECTS

        self._connected = False
        self._closing = False
        self._entered = False
        #: Bumped on every connection loss: a handler started on an older connection
        #: must not acknowledge on a newer one.
        self._generation = 0
        #: Server's Receive Maximum from the last CONNACK (65535 when absent).
        self._server_receive_maximum = 65535
        #: Server's Maximum Packet Size from the last CONNACK (None: MQTT's own limit).
        self._max_packet_size: int | None = None
        #: packet id → PUBACK reason code (>= 0x80) of the PUBACK being handled.
        self._refusals: dict[int, int] = {}
        self._connected_event = asyncio.Event()

        self._subscriptions: dict[str, _Subscription] = {}
        self._suback_waiters: dict[int, tuple[_Subscription, asyncio.Future[int]]] = {}

        self._publish_futures: dict[int, asyncio.Future[None]] = {}
        self._pending_future: asyncio.Future[None] | None = None
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        #: Slots handed to woken waiters that have not published yet.
        self._promised = 0
        self._window = 1
        self._update_window()

        self._handlers: set[asyncio.Task[Any]] = set()
        #: Cleared while ``receive_maximum`` handlers run: gmqtt's read loop waits on it.
        self._read_gate = asyncio.Event()
        self._read_gate.set()
        self._handlers_idle = asyncio.Event()
        self._handlers_idle.set()
        self._background: set[asyncio.Task[None]] = set()
        self._backoff_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        """CONNACK received and the socket still open."""
        return self._connected and bool(self._gm.is_connected)

    @property
    def inflight(self) -> int:
        """Our QoS 1 publishes still waiting for their PUBACK (replayed ones included)."""
        return self._storage.size

    @property
    def max_packet_size(self) -> int | None:
        """The broker's Maximum Packet Size (CONNACK), None when it set none."""
        return self._max_packet_size

    @property
    def window(self) -> int:
        """Most publishes allowed in flight on this connection (from Receive Maximum)."""
        return self._window

    def _update_window(self) -> None:
        # gmqtt hands out ids 1 .. max-1 to PUBLISH and SUBSCRIBE alike: keep one per
        # subscription free so a resubscribe after CONNACK never meets OverflowError.
        reserved = max(1, len(self._subscriptions))
        self._window = max(1, min(self._server_receive_maximum, 65535) - 1 - reserved)

    @property
    def handling(self) -> int:
        """Incoming messages whose handler is still running (not yet acknowledged)."""
        return len(self._handlers)

    def topic_filter(self, topic: str) -> str:
        """The filter actually subscribed: ``$share/<group>/<topic>`` with ``shared_group``."""
        group = self._config.shared_group
        return f"$share/{group}/{topic}" if group else topic

    @property
    def subscriptions(self) -> list[str]:
        return list(self._subscriptions)

    def subscribed(self, topic: str) -> bool:
        """The broker SUBACKed ``topic`` on the current session: it queues matching
        messages for us even while this connection is down."""
        sub = self._subscriptions.get(self.topic_filter(topic))
        return sub is not None and sub.acked

    async def __aenter__(self) -> MqttClient:
        if self._entered:
            raise RuntimeError("MqttClient is not reentrant")
        self._entered = True
        try:
            await self._connect_once()
        except MqttError:
            await self._close_gmqtt()
            raise
        except (OSError, TimeoutError) as exc:
            log.warning(
                "mqtt.connect_failed",
                host=self._config.host,
                port=self._config.port,
                error=str(exc) or type(exc).__name__,
                retry="background",
            )
            self._spawn(self._connect_until_up())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        if self._handlers and self.connected:
            # Let jobs being committed finish so their PUBACKs go out now rather than
            # being redelivered (and deduplicated) after the next start.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._handlers_idle.wait(), self._drain_timeout)
        for task in list(self._background):
            task.cancel()
        if self._backoff_task is not None:
            self._backoff_task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._close_gmqtt()
        self._set_connected(False)
        self._fail_publishes("client closed")
        self._fail_slot_waiters("client closed")
        for _, waiter in self._suback_waiters.values():
            if not waiter.done():
                waiter.cancel()
        self._suback_waiters.clear()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """True once connected; False if ``timeout`` seconds pass first."""
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def subscribe(self, topic: str, qos: int = 1, *, timeout: float = 10.0) -> None:
        """Subscribe for the life of the session (``shared_group`` applied).

        When connected, waits for the SUBACK and raises :class:`MqttError` if the broker
        refuses. When not connected (or the connection drops first), returns: the
        subscription is sent on the next CONNACK, and again whenever the broker has lost
        our session.
        """
        if self._on_message is None:
            raise ValueError("subscribe() needs an on_message handler")
        if qos not in (0, 1):
            # QoS 2 would need PUBREC withheld too; at-least-once plus dedup suffices.
            raise ValueError("qos must be 0 or 1")
        full = self.topic_filter(topic)
        sub = self._subscriptions.get(full)
        if sub is None:
            sub = self._subscriptions[full] = _Subscription(full, qos)
            self._update_window()
        else:
            sub.qos, sub.acked = qos, False
        if not self.connected:
            return
        waiter = self._send_subscription(sub)
        try:
            granted = await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.CancelledError:
            if waiter.cancelled():  # connection lost: resent on the next CONNACK
                return
            raise
        except TimeoutError:
            raise MqttUnavailable(f"no SUBACK for {full!r} within {timeout} s") from None
        if granted >= 0x80:
            del self._subscriptions[full]
            self._update_window()
            raise MqttError(f"broker refused subscription to {full!r} (reason 0x{granted:02x})")

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        correlation_data: bytes | None = None,
        retain: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Publish; with QoS 1 return only once the broker's PUBACK arrived.

        Raises :class:`MqttUnavailable` at once when not connected, when the connection is
        lost before the PUBACK, or when ``timeout`` seconds pass without one. The message
        may still reach the broker in those cases (retransmitted on reconnect), so a caller
        falling back to its outbox gets at-least-once, never a loss.
        """
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if qos == 0:
            properties: dict[str, Any] = {}
            if correlation_data is not None:
                properties["correlation_data"] = correlation_data
            self._require_connected()
            self._gm.publish(gmqtt.Message(topic, payload, qos=0, retain=retain, **properties))
            return
        packet_properties = publish_properties(correlation_data)
        if timeout is None:  # no asyncio.Timeout per publish when there is no limit
            await self._acquire_slot()
            await self._send_publish(topic, payload, packet_properties, retain)
            return
        try:
            async with asyncio.timeout(timeout):
                await self._acquire_slot()
                await self._send_publish(topic, payload, packet_properties, retain)
        except TimeoutError:
            raise MqttUnavailable(f"no PUBACK for {topic!r} within {timeout} s") from None

    def publish_soon(
        self, topic: str, payload: bytes, *, correlation_data: bytes | None = None
    ) -> asyncio.Future[None]:
        """:meth:`publish` at QoS 1 without a coroutine: the future of its PUBACK.

        For a caller with many events at once (the outbox's rounds): while a packet id is
        free under Receive Maximum the PUBLISH is written now and the future is the PUBACK's
        own, so a round costs no task per event; only past the window does it fall back to
        a task running :meth:`publish`. Every failure :meth:`publish` would raise is the
        future's exception instead."""
        loop = self._running()
        try:
            if (
                self.connected
                and not self._slot_waiters
                and self._storage.size + self._promised < self._window
            ):
                return self._send_publish(topic, payload, publish_properties(correlation_data))
        except Exception as exc:
            failed: asyncio.Future[None] = loop.create_future()
            failed.set_exception(exc)
            return failed
        return asyncio.ensure_future(
            self.publish(topic, payload, qos=1, correlation_data=correlation_data)
        )

    # ------------------------------------------------------------------ connecting

    async def _connect_once(self) -> None:
        context: ssl.SSLContext | bool = False
        if self._config.tls is not None:
            context = client_context(self._config.tls)
        try:
            await asyncio.wait_for(
                self._gm.connect(
                    self._config.host,
                    self._config.port,
                    ssl=context,
                    keepalive=self._config.keepalive,
                    version=MQTTv50,
                ),
                self._connect_timeout,
            )
        except gmqtt.MQTTConnectError as exc:
            raise MqttError(f"broker refused the connection: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            # A configuration problem, like bad credentials, not an outage.
            raise MqttError(f"broker certificate not trusted: {exc.verify_message}") from exc
        except TimeoutError:
            # TCP up but no CONNACK: close it so a late CONNACK cannot revive it.
            await self._close_gmqtt()
            raise

    async def _connect_until_up(self) -> None:
        """First connection when the broker was down at start; gmqtt takes over after it."""
        delay = self._reconnect_min
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self._connect_once()
                return
            except MqttError as exc:
                log.error("mqtt.connect_refused", error=str(exc))
                await self._close_gmqtt()
            except (OSError, TimeoutError) as exc:
                log.info("mqtt.connect_retry", error=str(exc) or type(exc).__name__, delay=delay)
            delay = min(delay * 2, self._reconnect_max)

    async def _reconnect_backoff(self) -> None:
        """Double gmqtt's fixed reconnect delay while the broker stays away."""
        delay = self._reconnect_min
        self._gm.reconnect_delay = delay
        while not self._closing and not self._connected:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max)
            self._gm.reconnect_delay = delay

    async def _close_gmqtt(self) -> None:
        """DISCONNECT (the session stays on the broker); gmqtt stops reconnecting.

        Not ``stop_reconnect()``: it sets ``reconnect_retries`` to 0 for good, which would
        end automatic reconnects after the first failed attempt of a later connection.
        ``disconnect()`` clears gmqtt's ``_is_active`` flag instead, which ``connect()`` sets.
        """
        with contextlib.suppress(Exception):
            await self._gm.disconnect()

    def _handle_connect(self, _client: Any, session_present: int, _rc: int, _props: Any) -> None:
        if self._closing:
            # A reconnect gmqtt had already scheduled completed after close: undo it.
            self._spawn(self._close_gmqtt())
            return
        connack = getattr(self._gm._package_handler, "_connack_properties", {})
        maximum = _first(connack, "receive_maximum")
        self._server_receive_maximum = int(maximum) if maximum else 65535
        packet_limit = _first(connack, "maximum_packet_size")
        self._max_packet_size = int(packet_limit) if packet_limit else None
        self._update_window()
        self._reconcile_packet_ids()
        self._read_gate.set()
        self._gate_reads()  # a new connection, a new protocol
        # Back to the shortest delay for the next outage. The back-off task of the last
        # outage may still be asleep: left running, it would wake into the next outage
        # and keep doubling from where it was (30 s for a blip right after a long one).
        if self._backoff_task is not None:
            self._backoff_task.cancel()
            self._backoff_task = None
        self._gm.reconnect_delay = self._reconnect_min
        if not session_present:
            for sub in self._subscriptions.values():
                sub.acked = False
        log.info(
            "mqtt.connected",
            host=self._config.host,
            port=self._config.port,
            session_present=bool(session_present),
            receive_maximum=self._server_receive_maximum,
            replaying=self._storage.size,
        )
        self._set_connected(True)
        for sub in self._subscriptions.values():
            if not sub.acked:
                self._send_subscription(sub)
        self._wake_slot_waiters()

    def _handle_disconnect(self, _client: Any, _packet: Any, exc: Any = None) -> None:
        self._generation += 1
        was_connected = self._connected
        self._set_connected(False)
        for sub, waiter in self._suback_waiters.values():
            sub.acked = False
            if not waiter.done():
                waiter.cancel()
        self._suback_waiters.clear()
        self._fail_publishes("connection lost before PUBACK", lost=True)
        if not self._replay_inflight:
            self._storage.forget()  # ids are freed at the next CONNACK (reconcile)
        self._fail_slot_waiters("connection lost")
        if was_connected and not self._closing:
            log.warning("mqtt.disconnected", host=self._config.host, port=self._config.port)
        if not self._closing and (self._backoff_task is None or self._backoff_task.done()):
            self._backoff_task = asyncio.ensure_future(self._reconnect_backoff())

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        if connected:
            self._connected_event.set()
        else:
            self._connected_event.clear()
        if self._on_connection_change is not None:
            try:
                self._on_connection_change(connected)
            except Exception:
                log.exception("mqtt.connection_callback_failed")

    def _reconcile_packet_ids(self) -> None:
        """Free packet ids gmqtt leaked; only publishes still in its store hold one now.

        gmqtt frees an id on PUBACK/SUBACK only, so ids of publishes discarded with a lost
        session, and of SUBSCRIBEs whose connection died, stay taken forever and would
        shrink the window until ``OverflowError``. At CONNACK nothing else can hold one.
        """
        generator = getattr(self._gm._package_handler, "id_generator", None)
        used = getattr(generator, "_used_ids", None)
        if isinstance(used, set):
            used.intersection_update(self._storage.mids)

    # ------------------------------------------------------------------ subscribing

    def _send_subscription(self, sub: _Subscription) -> asyncio.Future[int]:
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        subscription = gmqtt.Subscription(
            sub.topic,
            qos=sub.qos,
            retain_as_published=True,
            retain_handling_options=_NO_RETAINED,
        )
        mid = self._gm.resubscribe(subscription)
        self._suback_waiters[mid] = (sub, waiter)
        return waiter

    def _handle_suback(self, _client: Any, mid: int, granted: Iterable[int], _props: Any) -> None:
        entry = self._suback_waiters.pop(mid, None)
        if entry is None:
            return
        sub, waiter = entry
        code = next(iter(granted), 0x80)
        if code < 0x80:
            sub.acked = True
            log.info("mqtt.subscribed", topic=sub.topic, qos=code)
        else:
            log.error("mqtt.subscribe_refused", topic=sub.topic, reason=code)
        if not waiter.done():
            waiter.set_result(code)

    # ------------------------------------------------------------------ intake

    async def _dispatch(
        self, _client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> int:
        """gmqtt's on_message: run the handler, then say whether to PUBACK (never raises)."""
        generation = self._generation
        handler = self._on_message
        if self._closing or handler is None:
            return WITHHOLD  # redelivered to whoever runs next
        task = asyncio.current_task(self._running())
        if task is not None:
            self._handlers.add(task)
            self._handlers_idle.clear()
            if len(self._handlers) >= self._receive_maximum:
                self._read_gate.clear()
        try:
            response_topic = _first(properties, "response_topic")
            correlation_data = _first(properties, "correlation_data")
            message = Message(
                topic=topic,
                payload=bytes(payload),
                qos=qos,
                response_topic=str(response_topic) if response_topic is not None else None,
                correlation_data=bytes(correlation_data) if correlation_data is not None else None,
                retain=bool(properties.get("retain", False)),
            )
            await handler(message)
        except Exception as exc:
            if isinstance(exc, Declined):
                log.debug("mqtt.handler_declined", topic=topic, reason=str(exc))
            else:
                log.exception("mqtt.handler_failed", topic=topic)
            if qos > 0 and generation == self._generation:
                # The broker resends an unacknowledged message only on a new connection.
                self._generation += 1
                self._spawn(self._gm.reconnect(delay=True))
            return WITHHOLD
        finally:
            if task is not None:
                self._handlers.discard(task)
                if not self._handlers:
                    self._handlers_idle.set()
                if len(self._handlers) <= self._receive_maximum // 2:
                    self._read_gate.set()
        if generation != self._generation or not self.connected:
            return WITHHOLD
        return _SUCCESS

    def _gate_reads(self) -> None:
        """Flow control on intake. Mosquitto stops honouring our Receive Maximum once
        PUBACKs flow, so with a million jobs waiting it hands us hundreds of thousands at
        once (measured: 230,000 handlers, 2.3 GB). gmqtt's read loop is made to wait while
        ``receive_maximum`` handlers run (until half of them are done); its StreamReader
        then fills up and stops reading the socket, and TCP pushes back on the broker.
        (Pausing the transport directly does not hold: the StreamReader resumes it.)"""
        missing = gate_reads(self._gm, self._read_gate)
        if missing is not None:
            # check_gmqtt vouched for these: a connection without them is a gmqtt bug.
            log.error("mqtt.read_gate_unavailable", connection=missing)
        # The packets of one event-loop turn (PUBACKs of an intake batch, an outbox
        # round's PUBLISHes) as one socket write; without it each is its own.
        missing = dispatch_direct(self._gm)
        if missing is not None:
            log.warning("mqtt.direct_dispatch_unavailable", connection=missing)
        missing = cork_writes(self._gm)
        if missing is not None:
            log.warning("mqtt.cork_unavailable", connection=missing)

    # ------------------------------------------------------------------ publishing

    def _require_connected(self) -> None:
        if not self.connected:
            raise MqttUnavailable(
                f"not connected to MQTT broker {self._config.host}:{self._config.port}"
            )

    async def _acquire_slot(self) -> None:
        """Wait, first come first served, until a packet id is free under Receive Maximum.

        A woken waiter is *promised* its slot (``_promised``) so that a publisher arriving
        meanwhile cannot take it: without that, 1000 concurrent publishers on a window of
        18 woke and re-queued about ten times per publish.
        """
        self._require_connected()
        if not self._slot_waiters and self._storage.size + self._promised < self._window:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._promised -= 1  # we were handed a slot we will not use: pass it on
                self._wake_slot_waiters()
            else:
                with contextlib.suppress(ValueError):
                    self._slot_waiters.remove(waiter)
            raise
        self._promised -= 1

    def _wake_slot_waiters(self) -> None:
        free = self._window - self._storage.size - self._promised
        while free > 0 and self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._promised += 1
                free -= 1

    def _fail_slot_waiters(self, reason: str) -> None:
        waiters, self._slot_waiters = self._slot_waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(MqttUnavailable(reason))

    def _send_publish(
        self, topic: str, payload: bytes, properties: bytes, retain: bool = False
    ) -> asyncio.Future[None]:
        """A QoS 1 PUBLISH written now (``properties`` from :func:`publish_properties`):
        the future of its PUBACK."""
        self._require_connected()
        future: asyncio.Future[None] = self._running().create_future()
        self._pending_future = future
        try:
            send_qos1_publish(self._gm, topic, payload, properties, retain)
        except OverflowError as exc:  # the window should make this impossible
            log.error("mqtt.packet_ids_exhausted", inflight=self._storage.size)
            raise MqttUnavailable("no free MQTT packet id") from exc
        finally:
            self._pending_future = None
        return future

    def _stored(self, mid: int) -> None:
        """gmqtt stored a QoS>0 packet under ``mid``: it is the publish being sent now."""
        future = self._pending_future
        if future is not None:
            self._pending_future = None
            self._publish_futures[mid] = future

    def _refused(self, mid: int, reason_code: int) -> None:
        """A PUBACK with a failure code arrived for ``mid``; ``_acknowledged`` follows."""
        self._refusals[mid] = reason_code

    def _acknowledged(self, mid: int) -> None:
        future = self._publish_futures.pop(mid, None)
        refusal = self._refusals.pop(mid, None)
        if future is not None and not future.done():
            if refusal is None:
                future.set_result(None)
            else:
                future.set_exception(PublishRefused(refusal))
        elif refusal is not None:
            log.warning("mqtt.replayed_publish_refused", reason=f"0x{refusal:02x}")
        self._wake_slot_waiters()

    def _discarded(self, mids: list[int]) -> None:
        """gmqtt dropped its in-flight packets (session lost): they will never be PUBACKed."""
        for mid in mids:
            future = self._publish_futures.pop(mid, None)
            if future is not None and not future.done():
                future.set_exception(MqttUnavailable("broker lost the session before PUBACK"))
        if mids:
            log.warning("mqtt.inflight_discarded", count=len(mids))
        self._wake_slot_waiters()

    def _fail_publishes(self, reason: str, *, lost: bool = False) -> None:
        """Fail every publish awaiting its PUBACK; ``lost``: the connection dropped."""
        futures, self._publish_futures = self._publish_futures, {}
        error = PublishLost if lost else MqttUnavailable
        for future in futures.values():
            if not future.done():
                future.set_exception(error(reason))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
