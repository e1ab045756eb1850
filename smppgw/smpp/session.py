"""One SMPP bind (ESME side), and the keeper that holds it up across failures.

:class:`Session` is an asyncio Protocol over one TCP connection: it binds, keeps a window of
outstanding requests (sequence number → future, each with its own response timeout),
answers the SMSC's enquire_link, sends its own when the link is quiet, and hands every
deliver_sm / data_sm to an async handler, answering only when the handler returns. It
never guesses: a request whose response does not come resolves to :class:`NoResponse`,
which callers must treat as "the SMSC may or may not have it".

:class:`SessionKeeper` owns the reconnect loop for one bind slot: connect, bind, wait for the
connection to end, back off (exponential, jittered, never below ``reconnect_min``), again.
The old socket is always closed before the next connect, and a refused bind backs off like
a failed connect, so a misconfigured password or an SMSC that says ESME_RALYBND sees a few
attempts a minute, not a storm.

Both take a :class:`BindParams`: plain values the application builds from its own
configuration, so this module knows nothing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from ssl import SSLContext
from typing import Protocol, cast

import structlog

from smppgw.smpp.codec import decode, encode
from smppgw.smpp.constants import RESPONSE_BIT, CommandId, Status, command_name, status_name
from smppgw.smpp.errors import FrameError, PduError
from smppgw.smpp.framing import DEFAULT_MAX_PDU_LENGTH, FrameReader, peek_header
from smppgw.smpp.pdu import (
    BIND_CLASSES,
    PDU_CLASSES,
    DataSm,
    DeliverSm,
    EnquireLink,
    GenericNack,
    Pdu,
    Unbind,
    generic_nack,
)

log = structlog.stdlib.get_logger("smppgw.session")

#: Highest sequence number (SMPP 3.4 section 3.2: 0x00000001 to 0x7FFFFFFF).
MAX_SEQUENCE = 0x7FFFFFFF
#: deliver_sm / data_sm being handled at once per session before reading pauses.
MAX_DELIVER_HANDLERS = 1000


@dataclass(frozen=True, slots=True)
class BindParams:
    """Everything one bind needs to know, and nothing of where it came from.

    Like go-smpp's ``Transmitter{Addr, User, Passwd, EnquireLink, RespTimeout, WindowSize}``:
    the application builds one from its own configuration (the gateway does in
    :func:`smppgw.engine.binds.bind_params`), so this library reads no config file, holds no
    ``Secret`` type and knows no TLS settings, only an ``ssl.SSLContext`` (or ``None`` for
    plain TCP). Times are in seconds; 0 turns a timer off where noted.
    """

    #: Names the account in log lines and in every :class:`SessionObserver` call.
    name: str
    host: str
    port: int
    system_id: str
    #: Kept out of ``repr()``, so a params object in a log line or traceback does not show it.
    password: str = field(default="", repr=False)
    system_type: str = ""
    address_range: str = ""
    #: ``transmitter``, ``receiver`` or ``transceiver``.
    mode: str = "transceiver"
    #: Submit-like requests outstanding at once (at least 1).
    window: int = 10
    #: enquire_link after this long without anything received (0: never).
    enquire_link: float = 30.0
    #: Wait for a response to any request (0: forever).
    response_timeout: float = 10.0
    #: Wait for the TCP (and TLS) connect, and then again for the bind response.
    bind_timeout: float = 10.0
    #: A PDU must be complete this long after its first octets arrived (0: no limit).
    frame_timeout: float = 10.0
    #: Reconnect back-off bounds (see :func:`backoff`).
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    #: TLS client context, or ``None`` for plain TCP.
    ssl: SSLContext | None = None

    def __post_init__(self) -> None:
        if self.mode not in BIND_CLASSES:
            raise ValueError(f"bind mode {self.mode!r}: transmitter, receiver or transceiver")


@dataclass(frozen=True, slots=True)
class NoResponse:
    """A request's outcome is unknown: no response before the timeout, or the link died.

    Not an error code: the SMSC may have acted on the request. For a submit_sm that means
    the message may be on its way (and may still produce a receipt).

    ``resendable`` is False when a response did come, said ESME_ROK, and could not be used
    (a message_id over 64 octets, a body that does not parse, the wrong command): the SMSC
    took the request, so sending it again would send it twice, whatever a carrier's
    ``resend_on_timeout`` says.
    """

    reason: str
    resendable: bool = True


#: What a request resolves to: the response PDU (any status) or :class:`NoResponse`.
Result = Pdu | NoResponse


class BindError(Exception):
    """The bind did not succeed: refused with ``status``, or no bind response at all."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(reason)


class NotBound(RuntimeError):
    """A request on a session that is not connected (a caller bug: check ``can_submit``)."""


class State(StrEnum):
    CONNECTING = "connecting"
    BINDING = "binding"
    BOUND = "bound"
    UNBINDING = "unbinding"
    CLOSED = "closed"


class DeliverHandler(Protocol):
    """Receives what the SMSC sends us; the returned status goes into the *_resp."""

    async def deliver(self, session: Session, pdu: DeliverSm | DataSm) -> int: ...


class SessionObserver(Protocol):
    """What a bind reports for metrics, so this module needs no metrics library.

    Called on the event loop, in the middle of protocol handling: every method must be
    cheap and must not raise. ``session`` is the bind's slot within its ``bind`` mode
    (0-based); ``bind`` is the mode (transmitter, receiver, transceiver).
    """

    def session_state(self, carrier: str, session: int, bind: str, state: str) -> None:
        """The bind moved to ``state`` (a :class:`State` value)."""

    def bind_result(self, carrier: str, result: int | str) -> None:
        """A bind attempt ended: the bind_resp command_status, or "connect_error",
        "timeout" (no bind_resp) or "closed" (the connection went during the bind)."""

    def reconnect(self, carrier: str) -> None:
        """A bound session was lost (not stopped by us) and will be re-established."""

    def malformed_pdu(self, carrier: str) -> None:
        """The SMSC sent a PDU that could not be decoded, or a response that does not
        answer its request (another command's response with the request's sequence)."""

    def enquire_link_timeout(self, carrier: str) -> None:
        """Our enquire_link got no response: the link is considered dead."""


class Unobserved:
    """The default :class:`SessionObserver`: reports nothing."""

    def session_state(self, carrier: str, session: int, bind: str, state: str) -> None:
        pass

    def bind_result(self, carrier: str, result: int | str) -> None:
        pass

    def reconnect(self, carrier: str) -> None:
        pass

    def malformed_pdu(self, carrier: str) -> None:
        pass

    def enquire_link_timeout(self, carrier: str) -> None:
        pass


UNOBSERVED: SessionObserver = Unobserved()


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Result]
    timer: asyncio.TimerHandle | None
    in_window: bool
    #: The request's command_id: its response must be ``command_id | RESPONSE_BIT``.
    command_id: int


class Session(asyncio.Protocol):
    """One TCP connection and its bind.

    ``params.mode`` is ``transmitter``, ``receiver`` or ``transceiver``. The window counts only
    submit-like requests (``request(..., in_window=True)``); enquire_link and unbind go
    outside it so a full window never stops the keepalive.
    """

    def __init__(
        self,
        params: BindParams,
        handler: DeliverHandler,
        *,
        name: str = "",
        max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
        observer: SessionObserver = UNOBSERVED,
        slot: int = 0,
    ) -> None:
        self.params = params
        self.mode = params.mode
        self.name = name or f"{params.name}/{params.mode}"
        self.handler = handler
        self._observer = observer
        self._slot = slot
        self.state = State.CONNECTING
        self.window = max(1, params.window)
        self._max_pdu_length = max_pdu_length
        self._reader = FrameReader(max_pdu_length)
        self._transport: asyncio.Transport | None = None
        #: Responses (:meth:`_send`) encoded after the first of this event-loop turn,
        #: written as one ``transport.write`` (one ``send`` system call) at its end: the
        #: deliver_sm_resp to the receipts of one read cost two calls instead of one
        #: each. None: nothing was sent this turn (the next response goes at once).
        #: Requests are always written at once (:meth:`request`).
        self._out: list[bytes] | None = None
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, _Pending] = {}
        #: (loop-time deadline, sequence) of the requests awaiting a response, in send
        #: order and so in deadline order (a request due before the last one queued gets
        #: a timer of its own instead), and the one timer armed for the first of them.
        #: A TimerHandle per submit_sm (created, then cancelled by its response) was ~2 µs
        #: of the event loop per submit (uvloop: a libuv timer each); answered entries
        #: leave the front as responses arrive.
        self._deadlines: deque[tuple[float, int]] = deque()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0
        self._in_window = 0
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Reads paused because ``MAX_DELIVER_HANDLERS`` deliver_sm are being handled.
        self._reading_paused = False
        #: Loop time at which the PDU now partly buffered started arriving (None: none).
        self._partial_since: float | None = None
        self._frame_timer: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self.close_reason = ""
        self.last_rx = time.monotonic()
        self.smsc_system_id = ""
        #: Counters for metrics and tests.
        self.enquire_links_sent = 0
        self.delivers = 0
        self.generic_nacks_sent = 0
        self.timeouts = 0

    # ------------------------------------------------------------------ state
    @property
    def can_submit(self) -> bool:
        return (
            self.state is State.BOUND
            and self.mode != "receiver"
            and self._transport is not None
            and not self._transport.is_closing()
        )

    @property
    def free_window(self) -> int:
        return self.window - self._in_window if self.can_submit else 0

    @property
    def in_flight(self) -> int:
        """Window slots in use (submits awaiting their response)."""
        return self._in_window

    def retune(self, params: BindParams) -> None:
        """Take the new window and timeouts of a reload without rebinding. A smaller window
        only holds back new submits; those already in it finish. Timeouts apply to the
        requests sent from now on; a new enquire_link interval restarts the keepalive."""
        interval_changed = params.enquire_link != self.params.enquire_link
        self.params = params
        self.window = max(1, params.window)
        if interval_changed and self.state is State.BOUND:
            if self._keepalive is not None:
                self._keepalive.cancel()  # asleep for the old interval
                self._keepalive = None
            if params.enquire_link > 0:
                self._keepalive = self._loop.create_task(self._keep_alive())

    @property
    def closed(self) -> bool:
        return self._closed.done()

    def _set_state(self, state: State) -> None:
        self.state = state
        self._observer.session_state(self.params.name, self._slot, self.mode, state)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: a cast, not a check.
        self._transport = cast(asyncio.Transport, transport)
        self.last_rx = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.close_reason:
            self.close_reason = f"connection lost: {exc}" if exc else "closed by the SMSC"
        was = self.state
        self._set_state(State.CLOSED)
        self._transport = None
        self._out = None
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._in_window = 0
        outcome = NoResponse(self.close_reason)
        for entry in pending.values():
            if entry.timer is not None:
                entry.timer.cancel()
            if not entry.future.done():
                entry.future.set_result(outcome)
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None
        if not self._closed.done():
            self._closed.set_result(None)
        if was in (State.BOUND, State.UNBINDING):
            log.info(
                "session closed",
                session=self.name,
                reason=self.close_reason,
                outstanding=len(pending),
            )

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except FrameError as exc:
            self._observer.malformed_pdu(self.params.name)
            self.abort(f"framing error: {exc}")
            return
        self.last_rx = time.monotonic()
        if self._reader.buffered:
            if frames or self._partial_since is None:  # a new PDU started in this read
                self._partial_since = self._loop.time()
                if self._frame_timer is None and self.params.frame_timeout > 0:
                    self._frame_timer = self._loop.call_later(
                        self.params.frame_timeout, self._check_partial_frame
                    )
        else:
            self._partial_since = None
        for frame in frames:
            try:
                pdu = decode(frame, self._max_pdu_length)
            except FrameError as exc:
                self._observer.malformed_pdu(self.params.name)
                self.abort(f"framing error: {exc}")
                return
            except PduError as exc:
                self._unreadable(exc, frame)
                continue
            self._dispatch(pdu)
            if self._transport is None:
                return

    def _check_partial_frame(self) -> None:
        """A PDU that started arriving must be complete within ``frame_timeout``: a peer
        that stops (or trickles) mid-PDU would otherwise leave the link looking alive
        while every response behind it is stuck, and each submit_sm sent into it would
        end as an unknown outcome."""
        self._frame_timer = None
        since = self._partial_since
        if since is None or self._transport is None:
            return
        remaining = since + self.params.frame_timeout - self._loop.time()
        if remaining > 0:
            self._frame_timer = self._loop.call_later(remaining, self._check_partial_frame)
            return
        self._observer.malformed_pdu(self.params.name)
        self.abort(
            f"incomplete PDU ({self._reader.buffered} octets) not completed within "
            f"frame_timeout {self.params.frame_timeout:g} s"
        )

    # ------------------------------------------------------------------ requests
    def request(
        self,
        pdu: Pdu,
        timeout: float | None = None,
        *,
        in_window: bool = True,
        hold: bool = False,
    ) -> asyncio.Future[Result]:
        """Send ``pdu`` with a fresh sequence number; the future resolves to its outcome.

        ``hold``: queue the bytes for :meth:`write_held` (at the latest, the end of this
        loop turn) instead of a write of their own, so that a dispatcher sending a burst
        of submits makes one write (one system call, one wake-up of the SMSC) for all of
        them. The caller bounds how long it holds (``engine.carrier``: 1 ms).

        Raises :class:`NotBound` when the connection is gone (nothing was sent) and
        ``ValueError`` when the PDU cannot be encoded (nothing was sent either).
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            raise NotBound(f"{self.name}: not connected")
        seq = self._seq % MAX_SEQUENCE + 1
        pdu.sequence = seq
        data = encode(pdu)
        self._seq = seq
        fut: asyncio.Future[Result] = self._loop.create_future()
        timer = None
        if timeout is None:
            timeout = self.params.response_timeout
        if timeout > 0:
            deadline = self._loop.time() + timeout
            deadlines = self._deadlines
            if not deadlines or deadlines[-1][0] <= deadline:
                deadlines.append((deadline, seq))
                if self._deadline_timer is None or deadline < self._deadline_at:
                    # (Earlier than the timer only when what it was armed for is gone.)
                    self._arm_deadline(deadline)
            else:
                # Due before requests already queued (a shorter explicit timeout, or a
                # reload shortened response_timeout): a timer of its own keeps the order.
                timer = self._loop.call_later(timeout, self._expire, seq)
        self._pending[seq] = _Pending(fut, timer, in_window, pdu.command_id)
        if in_window:
            self._in_window += 1
        out = self._out
        if hold:
            if out is None:
                self._out = [data]
                self._loop.call_soon(self._flush)
            else:
                out.append(data)
            return fut
        # Otherwise a request is written now, never at the turn's end: a throttled
        # carrier's sends must reach the SMSC when the throttle let them go (an
        # exact-limit SMSC refuses the 101st submit of any second it sees). Responses
        # queued this turn go first.
        if out:
            out.append(data)
            data = b"".join(out)
            out.clear()
        transport.write(data)
        return fut

    def _write(self, data: bytes) -> None:
        """Write the response ``data`` now if it is this turn's first, else queue it for
        the turn's end (:meth:`_flush`). The caller checked the transport."""
        out = self._out
        if out is not None:
            out.append(data)
            return
        self._out = []
        self._loop.call_soon(self._flush)
        transport = self._transport
        assert transport is not None
        transport.write(data)

    def write_held(self) -> None:
        """Write what ``request(..., hold=True)`` queued (and responses queued after this
        turn's first write), now."""
        self._flush()

    def _flush(self) -> None:
        """Write what this turn queued after its first write, in order; dropped if the
        connection went meanwhile (as unsent bytes in the transport's buffer would be:
        requests resolve on close)."""
        out = self._out
        self._out = None
        if not out:
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _arm_deadline(self, deadline: float) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_at = deadline
        self._deadline_timer = self._loop.call_at(deadline, self._expire_due)

    def _expire_due(self) -> None:
        """The first default-timeout deadline is due: expire what is due (and still
        unanswered), then arm the timer for the next one."""
        self._deadline_timer = None
        deadlines = self._deadlines
        pending = self._pending
        # uvloop's clock and timers have millisecond resolution: a timer may fire up to
        # a millisecond before its deadline, which is then due (as it was before).
        now = self._loop.time() + 0.001
        while deadlines:
            deadline, seq = deadlines[0]
            if seq in pending and deadline > now:
                self._arm_deadline(deadline)
                return
            deadlines.popleft()
            if seq in pending:
                self._expire(seq)

    def _expire(self, seq: int) -> None:
        entry = self._pending.pop(seq, None)
        if entry is None:
            return
        if entry.in_window:
            self._in_window -= 1
        self.timeouts += 1
        if not entry.future.done():
            entry.future.set_result(NoResponse("no response within the response timeout"))

    def _resolve(self, pdu: Pdu) -> None:
        """Settle the request this response answers: same sequence *and* its command.

        A generic_nack answers any request and always fails it (status 0 there means
        nothing: it becomes ESME_RINVCMDID, never a success). Another command's response
        with the request's sequence is a protocol error: counted, logged, and the request
        ends as :class:`NoResponse` (not resendable when it said ESME_ROK), because we
        cannot tell what the SMSC did with it.
        """
        entry = self._pending.get(pdu.sequence)
        if entry is None:
            log.info(
                "response for no outstanding request (late, after its timeout?)",
                session=self.name,
                command=pdu.name,
                sequence=pdu.sequence,
                status=status_name(pdu.status),
            )
            return
        result: Result = pdu
        if pdu.command_id == CommandId.GENERIC_NACK:
            if pdu.status == Status.ESME_ROK:
                self._observer.malformed_pdu(self.params.name)
                result = GenericNack(sequence=pdu.sequence, status=Status.ESME_RINVCMDID)
            log.warning(
                "generic_nack for a request",
                session=self.name,
                request=command_name(entry.command_id),
                sequence=pdu.sequence,
                status=status_name(pdu.status),
            )
        elif pdu.command_id != entry.command_id | RESPONSE_BIT:
            self._observer.malformed_pdu(self.params.name)
            reason = (
                f"protocol error: {pdu.name} ({status_name(pdu.status)}) answered "
                f"{command_name(entry.command_id)}"
            )
            log.warning("response does not match its request", session=self.name, error=reason)
            result = NoResponse(reason, resendable=pdu.status != Status.ESME_ROK)
        self._settle(pdu.sequence, result)

    def _settle(self, seq: int, result: Result) -> None:
        entry = self._pending.pop(seq, None)
        if entry is None:
            return
        if entry.timer is not None:
            entry.timer.cancel()
        deadlines = self._deadlines
        while deadlines and deadlines[0][1] not in self._pending:
            deadlines.popleft()  # answered: keeps the queue as short as the window
        if entry.in_window:
            self._in_window -= 1
        if not entry.future.done():
            entry.future.set_result(result)

    def _send(self, pdu: Pdu) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        self._write(encode(pdu))
        return True

    # ------------------------------------------------------------------ incoming
    def _dispatch(self, pdu: Pdu) -> None:
        cid = pdu.command_id
        if cid & RESPONSE_BIT:
            self._resolve(pdu)
        elif cid == CommandId.ENQUIRE_LINK:
            self._send(pdu.response())
        elif cid == CommandId.DELIVER_SM or cid == CommandId.DATA_SM:
            assert isinstance(pdu, DeliverSm | DataSm)
            self.delivers += 1
            task = self._loop.create_task(self._answer(pdu))
            self._tasks.add(task)
            task.add_done_callback(self._handler_done)
            if len(self._tasks) >= MAX_DELIVER_HANDLERS and not self._reading_paused:
                # An SMSC that ignores its own window (or floods on purpose) would have
                # us start a task per deliver_sm without limit: stop reading instead,
                # which pushes back on it through TCP.
                transport = self._transport
                if transport is not None:
                    transport.pause_reading()
                    self._reading_paused = True
        elif cid == CommandId.UNBIND:
            self._send(pdu.response())
            self.close_reason = "unbind from the SMSC"
            self._set_state(State.UNBINDING)
            self.close()
        elif cid in (CommandId.ALERT_NOTIFICATION, CommandId.OUTBIND):
            pass  # no response is defined for these
        else:
            self.generic_nacks_sent += 1
            self._send(generic_nack(pdu.sequence, Status.ESME_RINVCMDID))

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._reading_paused and len(self._tasks) <= MAX_DELIVER_HANDLERS // 2:
            self._reading_paused = False
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    async def _answer(self, pdu: DeliverSm | DataSm) -> None:
        """Run the handler; the response goes out only after it returns (it is durable then).

        A handler that fails answers ESME_RX_T_APPN, so the SMSC keeps the message and
        delivers it again later; it is never acknowledged unless it was kept.
        """
        try:
            status = await self.handler.deliver(self, pdu)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("deliver handler failed; answering ESME_RX_T_APPN", session=self.name)
            status = Status.ESME_RX_T_APPN
        self._send(pdu.response(status=status))

    def _unreadable(self, exc: PduError, frame: bytes) -> None:
        self._observer.malformed_pdu(self.params.name)
        cid, seq = exc.command_id, exc.sequence
        if cid is not None and cid & RESPONSE_BIT:
            # A response we cannot read must still settle its request: with its error
            # status when it has one, else as unknown (accepted, but we lost the id).
            header = peek_header(frame)
            status = header[2] if header else 0
            entry = self._pending.get(seq) if seq is not None else None
            log.warning("unreadable response", session=self.name, error=str(exc))
            if entry is None or seq is None:
                return
            if status and cid in PDU_CLASSES:
                self._resolve(PDU_CLASSES[cid](sequence=seq, status=status))
            else:
                # It said ESME_ROK (or nothing usable): the SMSC may well have taken it.
                self._settle(
                    seq, NoResponse(f"unreadable response: {exc.reason}", resendable=False)
                )
            return
        log.warning("unreadable PDU; generic_nack", session=self.name, error=str(exc))
        if seq is not None:
            self.generic_nacks_sent += 1
            self._send(generic_nack(seq, exc.status))

    # ------------------------------------------------------------------ lifecycle
    async def bind(self) -> None:
        """Bind; raises :class:`BindError` on refusal or when no bind response comes."""
        cfg = self.params
        cls = BIND_CLASSES[self.mode]
        pdu = cls(
            system_id=cfg.system_id,
            password=cfg.password,
            system_type=cfg.system_type,
            address_range=cfg.address_range,
        )
        self._set_state(State.BINDING)
        result = await self.request(pdu, cfg.bind_timeout, in_window=False)
        if isinstance(result, NoResponse):
            self._observer.bind_result(cfg.name, "timeout" if self._transport else "closed")
            raise BindError(f"no bind response: {result.reason}")
        gone = result.status == Status.ESME_ROK and self._transport is None
        self._observer.bind_result(cfg.name, "closed" if gone else result.status)
        if result.status != Status.ESME_ROK:
            raise BindError(f"bind refused: {status_name(result.status)}", result.status)
        if gone:
            raise BindError("connection closed right after the bind response")
        self.smsc_system_id = str(getattr(result, "system_id", ""))
        self._set_state(State.BOUND)
        if cfg.enquire_link > 0:
            self._keepalive = self._loop.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        """enquire_link when nothing arrived for an interval; no answer means a dead link."""
        interval = self.params.enquire_link
        while self.state is State.BOUND:
            idle = time.monotonic() - self.last_rx
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            try:
                fut = self.request(EnquireLink(), in_window=False)
            except NotBound:
                return
            self.enquire_links_sent += 1
            result = await fut
            if isinstance(result, NoResponse) and self.state is State.BOUND:
                self._observer.enquire_link_timeout(self.params.name)
                self.abort("enquire_link unanswered")
                return

    async def unbind(self, timeout: float) -> None:
        """unbind, wait for unbind_resp (bounded), close; safe in any state."""
        if self.state is State.BOUND and self._transport is not None:
            self._set_state(State.UNBINDING)
            try:
                fut = self.request(Unbind(), timeout, in_window=False)
            except NotBound:
                pass
            else:
                await fut
        self.close("unbound")
        try:
            async with asyncio.timeout(timeout):
                await self.wait_closed()
        except TimeoutError:
            self.abort("unbind: close timed out")

    def close(self, reason: str = "") -> None:
        """Graceful close: what is written is flushed first."""
        if reason and not self.close_reason:
            self.close_reason = reason
        self._flush()
        if self._transport is not None:
            self._transport.close()

    def abort(self, reason: str) -> None:
        """Close now, dropping unsent data; outstanding requests resolve as unknown."""
        if not self.close_reason:
            self.close_reason = reason
        log.warning("closing session", session=self.name, reason=reason)
        if self._out:
            self._out = []
        if self._transport is not None:
            self._transport.abort()

    async def wait_handlers(self, timeout: float) -> None:
        """Wait (bounded) for running deliver handlers, then cancel the rest unanswered."""
        tasks = list(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)


def backoff(
    failures: int, low: float, high: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1, 2, ...).

    Exponential with full jitter above a floor: uniform in ``[low, min(high, low * 2**n)]``.
    The floor keeps a refused bind from being retried at once; the jitter spreads many
    gateways reconnecting after one SMSC restart.
    """
    cap = min(high, low * (2.0 ** max(0, failures)))
    if cap <= low:
        return low
    return low + (cap - low) * rng()


#: Awaited before each connection: returns what to await once that bind has ended. The
#: account's bind limit when several processes share it (a carrier refuses binds over
#: its limit): the keeper waits here for a free bind instead of being refused.
BindGate = Callable[[], Awaitable[Callable[[], Awaitable[None]]]]


class SessionKeeper:
    """Holds one bind slot up: the current bound :class:`Session`, or ``None``."""

    def __init__(
        self,
        params: BindParams,
        handler: DeliverHandler,
        *,
        name: str,
        on_change: Callable[[], None] = lambda: None,
        rng: Callable[[], float] = random.random,
        observer: SessionObserver = UNOBSERVED,
        slot: int = 0,
        gate: BindGate | None = None,
    ) -> None:
        self.params = params
        self._gate = gate
        self.mode = params.mode
        self.name = name
        self.handler = handler
        self._observer = observer
        #: This bind's index among the carrier's binds of the same mode (metrics label).
        self.slot = slot
        self._on_change = on_change
        self._rng = rng
        self.session: Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake: asyncio.Event | None = None
        #: Counters for metrics and tests.
        self.connect_attempts = 0
        self.bind_attempts = 0
        self.binds = 0
        self.bind_refusals = 0
        self.last_error = ""

    def retune(self, params: BindParams) -> None:
        """A reload changed what does not identify the bind (window, timeouts, back-off):
        the bound session takes it now, later sessions from here."""
        self.params = params
        session = self.session
        if session is not None:
            session.retune(params)
        self._on_change()

    def is_stopping(self) -> bool:
        """A method, not an attribute test, so type checkers do not assume it is constant."""
        return self._stopping

    @property
    def bound(self) -> bool:
        s = self.session
        return s is not None and s.state is State.BOUND

    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self, timeout: float) -> None:
        """Unbind (bounded by ``timeout``) and stop reconnecting."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        session = self.session
        if session is not None:
            await session.unbind(timeout)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                # The cancellation was lost in a race with a bind completing; the run
                # loop sees _stopping once the new session is unbound.
                session = self.session
                if session is not None:
                    await session.unbind(timeout)
                await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                log.error("session keeper did not stop", session=self.name)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            release = await self._gate() if self._gate is not None else None
            try:
                failures = await self._once(failures)
            finally:
                if release is not None:
                    await release()
            if self.is_stopping():
                break
            await self._pause(
                backoff(
                    failures + 1, self.params.reconnect_min, self.params.reconnect_max, self._rng
                )
            )

    async def _once(self, failures: int) -> int:
        """One connection: connect, bind, serve until it closes; the failure count after."""
        try:
            session = await self._connect_and_bind()
        except BindError as exc:
            failures += 1
            self.last_error = str(exc)
            if exc.status is not None:
                self.bind_refusals += 1
            log.warning("bind failed", session=self.name, error=str(exc), failures=failures)
        except (OSError, TimeoutError) as exc:
            failures += 1
            self._observer.bind_result(self.params.name, "connect_error")
            self._observer.session_state(self.params.name, self.slot, self.mode, State.CLOSED)
            self.last_error = f"connect: {exc!r}"
            log.warning("connect failed", session=self.name, error=repr(exc), failures=failures)
        else:
            failures = 0
            self.binds += 1
            self.session = session
            if self.is_stopping():
                await session.unbind(self.params.response_timeout)
                self.session = None
                return failures
            log.info("bound", session=self.name, smsc=session.smsc_system_id)
            self._on_change()
            try:
                await session.wait_closed()
            finally:
                self.session = None
                self._on_change()
            self.last_error = session.close_reason
            if not self.is_stopping():
                self._observer.reconnect(self.params.name)
        return failures

    async def _pause(self, delay: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def _connect_and_bind(self) -> Session:
        cfg = self.params
        loop = asyncio.get_running_loop()
        self.connect_attempts += 1

        def factory() -> Session:
            return Session(
                cfg,
                self.handler,
                name=self.name,
                observer=self._observer,
                slot=self.slot,
            )

        self._observer.session_state(cfg.name, self.slot, self.mode, State.CONNECTING)
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
        # that races with completion, and stop() relies on cancelling this.
        async with asyncio.timeout(cfg.bind_timeout):
            _transport, session = await loop.create_connection(
                factory, cfg.host, cfg.port, ssl=cfg.ssl
            )
        try:
            self.bind_attempts += 1
            await session.bind()
        except BaseException:
            session.abort("bind failed")
            raise
        return session
