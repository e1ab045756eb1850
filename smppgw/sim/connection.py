"""One client connection to the simulated SMSC, as an asyncio Protocol.

This is the hot path of the simulator (20,000+ submits a second on one core), so it is
written for throughput: every PDU decoded from one read is handled before anything is
written, all the responses of that read leave in one ``transport.write``, submit_sm_resp
bytes are packed directly, and nothing is logged per PDU unless the PDU log is on.

What the connection decides itself: bind state, validation, faults, responses. What it asks
the :class:`~smppgw.sim.server.Simulator` for: accounts, message ids, receipts, counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from typing import TYPE_CHECKING, Any, cast

from smppgw.sim.accounts import AccountState, OutItem
from smppgw.sim.receipts import ReceiptJob, receipt_text_field
from smppgw.sim.validate import check_submit
from smppgw.smpp.codec import decode, encode
from smppgw.smpp.constants import CommandId, Status, Tag
from smppgw.smpp.errors import FrameError, PduError, UnknownCommandError
from smppgw.smpp.framing import FrameReader
from smppgw.smpp.pdu import PDU_CLASSES, DataSm, Pdu, SubmitSm, Unbind

if TYPE_CHECKING:
    from smppgw.sim.server import Simulator

_HEADER = struct.Struct(">IIII")
_RESPONSE_BIT = 0x80000000
_BIND_MODES = {
    CommandId.BIND_TRANSMITTER: (True, False, "transmitter"),
    CommandId.BIND_RECEIVER: (False, True, "receiver"),
    CommandId.BIND_TRANSCEIVER: (True, True, "transceiver"),
}
_ENQUIRE_LINK_RESP = CommandId.ENQUIRE_LINK_RESP
_SEQ_MAX = 0x7FFFFFFF
_DELIVER_SM_RESP_ID = CommandId.DELIVER_SM_RESP.to_bytes(4, "big")
#: A deliver_sm_resp is a header and an (empty, per SMPP 3.4) message_id; TLVs are ignored.
_DELIVER_RESP_MAX = 16 + 65 + 64


def message_id_resp(command_id: int, status: int, sequence: int, message_id: bytes) -> bytes:
    """submit_sm_resp / data_sm_resp bytes; error responses carry no body (SMPP 3.4 4.4.2)."""
    resp_id = command_id | _RESPONSE_BIT
    if status:
        return _HEADER.pack(16, resp_id, status, sequence)
    return _HEADER.pack(17 + len(message_id), resp_id, 0, sequence) + message_id + b"\x00"


def header_only(command_id: int, status: int, sequence: int) -> bytes:
    return _HEADER.pack(16, command_id, status, sequence)


class SmscConnection(asyncio.Protocol):
    """The SMSC's end of one TCP connection (one bind at most, as SMPP 3.4 wants)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.loop = sim.loop
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.mode: str | None = None
        self.system_id: str | None = None
        self.account: AccountState | None = None
        self.can_submit = False
        self.can_receive = False
        self.submit_count = 0
        self.last_rx = self.loop.time()
        self.enquire_sent_at: float | None = None
        self.closing = False
        self.unbind_answered: asyncio.Future[None] | None = None
        #: deliver_sm sent and not answered yet: sequence → (item, monotonic send time).
        self.outstanding: dict[int, tuple[OutItem, float]] = {}
        self._seq = 0
        self._out: list[bytes] = []
        self._late: list[bytes] = []
        self._in_batch = False
        self._flush_scheduled = False

    # ------------------------------------------------------------------ plumbing
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.sim.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.unbind_answered is not None and not self.unbind_answered.done():
            self.unbind_answered.set_result(None)
        account = self.account
        if account is not None:
            account.remove_bind(self)
            # Deliveries the client never answered go back to the head of the queue, in
            # order; a lost connection is not the client refusing them, so no attempt used.
            items = [item for item, _ in self.outstanding.values()]
            self.outstanding.clear()
            for item in reversed(items):
                item.attempts -= 1
                account.enqueue(item, front=True)
            account.pump()
        self.sim.connection_closed(self)
        if self.sim.pdulog is not None:
            self.sim.pdulog.write_raw(self.sim.name, self.peer, "-", "closed")

    def _next_seq(self) -> int:
        seq = self._seq + 1
        if seq > _SEQ_MAX:
            seq = 1
        self._seq = seq
        return seq

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        if not self._in_batch and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            out.clear()
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def _write_late(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def send_pdu(self, pdu: Pdu) -> None:
        """Encode and queue a PDU (the slow, general path)."""
        self._queue(encode(pdu))
        if self.sim.pdulog is not None:
            self.sim.pdulog.write(self.sim.name, self.peer, "out", pdu)

    def close(self) -> None:
        """Close after what is queued has been written."""
        self.closing = True
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ input
    def data_received(self, data: bytes) -> None:
        sim = self.sim
        self.last_rx = now = self.loop.time()
        try:
            frames = self.reader.feed(data)
        except FrameError as exc:
            sim.counters.frame_errors += 1
            if sim.pdulog is not None:
                sim.pdulog.write_raw(sim.name, self.peer, "in", "frame_error", reason=exc.reason)
            self.abort()
            return
        self._in_batch = True
        try:
            pdulog = sim.pdulog
            for frame in frames:
                if self.closing:
                    break
                if (
                    len(frame) <= _DELIVER_RESP_MAX
                    and frame[4:8] == _DELIVER_SM_RESP_ID
                    and pdulog is None
                ):
                    # Receipt acks are half the PDUs under load; only the header matters.
                    _, _, status, sequence = _HEADER.unpack_from(frame)
                    self._on_deliver_resp(sequence, status)
                    continue
                try:
                    pdu = decode(frame)
                except UnknownCommandError as exc:
                    self._nack(exc)
                    continue
                except FrameError:
                    sim.counters.frame_errors += 1
                    self.close()
                    break
                except PduError as exc:
                    self._nack(exc)
                    continue
                if sim.pdulog is not None:
                    sim.pdulog.write(sim.name, self.peer, "in", pdu)
                command_id = pdu.command_id
                if command_id == CommandId.SUBMIT_SM or command_id == CommandId.DATA_SM:
                    self._on_submit(pdu, now)  # type: ignore[arg-type]
                elif command_id == CommandId.DELIVER_SM_RESP:
                    self._on_deliver_resp(pdu.sequence, pdu.status)
                else:
                    self._dispatch(pdu)
        finally:
            self._in_batch = False
        account = self.account
        if account is not None and account.pending:
            account.pump()
        self._flush()
        if self._late:
            self.loop.call_later(sim.faults.response_delay, self._write_late, b"".join(self._late))
            self._late.clear()
        if self.closing and self.transport is not None:
            self.transport.close()

    def _nack(self, exc: PduError) -> None:
        self.sim.counters.generic_nacks += 1
        if self.sim.pdulog is not None:
            self.sim.pdulog.write_raw(self.sim.name, self.peer, "in", "bad_pdu", reason=exc.reason)
        if exc.sequence is None:
            self.close()
            return
        self._queue(header_only(CommandId.GENERIC_NACK, exc.status, exc.sequence))

    def _dispatch(self, pdu: Pdu) -> None:
        command_id = pdu.command_id
        if command_id in _BIND_MODES:
            self._on_bind(pdu)
        elif command_id == CommandId.ENQUIRE_LINK:
            self.send_pdu(pdu.response())
        elif command_id == _ENQUIRE_LINK_RESP:
            self.enquire_sent_at = None
        elif command_id == CommandId.UNBIND:
            self.send_pdu(pdu.response())
            self.sim.counters.unbinds += 1
            self.closing = True  # data_received closes once the response is written
        elif command_id == CommandId.UNBIND_RESP:
            if self.unbind_answered is not None and not self.unbind_answered.done():
                self.unbind_answered.set_result(None)
            self.closing = True
        elif command_id == CommandId.GENERIC_NACK:
            self._on_deliver_resp(pdu.sequence, pdu.status or Status.ESME_RSYSERR)
        elif command_id & _RESPONSE_BIT:
            pass  # a response to nothing we sent: ignore, as SMSCs do
        elif self.mode is None:
            self._answer(pdu, Status.ESME_RINVBNDSTS)
        elif command_id == CommandId.QUERY_SM:
            self._answer(pdu, Status.ESME_RQUERYFAIL)
        else:  # deliver_sm, outbind, alert_notification... are not for an SMSC to receive
            self._answer(pdu, Status.ESME_RINVCMDID)

    def _answer(self, pdu: Pdu, status: int) -> None:
        """An error response: the command's own *_resp, else generic_nack."""
        resp_id = pdu.command_id | _RESPONSE_BIT
        if resp_id in PDU_CLASSES:
            self._queue(header_only(resp_id, status, pdu.sequence))
        else:
            self._queue(header_only(CommandId.GENERIC_NACK, status, pdu.sequence))

    # ------------------------------------------------------------------ bind
    def _on_bind(self, pdu: Any) -> None:
        sim = self.sim
        state: AccountState | None = None
        if self.mode is not None:
            status = Status.ESME_RALYBND
        elif sim.refusing_binds():
            status = Status.ESME_RBINDFAIL
        else:
            state = sim.accounts.get(pdu.system_id)
            if state is None:
                status = Status.ESME_RINVSYSID
            elif pdu.password != state.account.password:
                status = Status.ESME_RINVPASWD
            elif len(state.binds) >= state.account.max_binds:
                status = Status.ESME_RBINDFAIL
            else:
                status = Status.ESME_ROK
        resp = pdu.response(status, system_id=sim.name[:15])
        if status == Status.ESME_ROK and state is not None:
            if pdu.interface_version >= 0x34:
                resp.set_tlv(Tag.SC_INTERFACE_VERSION, 0x34)
            can_submit, can_receive, mode = _BIND_MODES[pdu.command_id]
            self.mode = mode
            self.system_id = pdu.system_id
            self.account = state
            self.can_submit = can_submit
            self.can_receive = can_receive
            state.add_bind(self, can_receive)
            sim.counters.binds_total += 1
        else:
            sim.counters.binds_refused += 1
        self.send_pdu(resp)

    # ------------------------------------------------------------------ submit
    def _on_submit(self, pdu: SubmitSm | DataSm, now: float) -> None:
        sim = self.sim
        counters = sim.counters
        command_id = pdu.command_id
        account = self.account
        if account is None or not self.can_submit:
            counters.submits_rejected += 1
            self._queue(message_id_resp(command_id, Status.ESME_RINVBNDSTS, pdu.sequence, b""))
            return
        faults = sim.faults
        self.submit_count += 1
        now = account.seen_at(now, faults.arrival_jitter)
        status = check_submit(pdu)
        if status == 0 and sim.rejects.table:
            status = self._refused_dest(pdu.destination_addr)
        if status == 0 and account.window is not None and not account.window.allow(now):
            status = Status.ESME_RTHROTTLED
            counters.submits_throttled += 1
        elif status:
            counters.submits_rejected += 1
        elif faults.reject_fraction and random.random() < faults.reject_fraction:
            status = faults.reject_status
            counters.submits_rejected += 1
        if status:
            self._respond(message_id_resp(command_id, status, pdu.sequence, b""))
        else:
            answered = not (
                faults.no_response_fraction and random.random() < faults.no_response_fraction
            )
            message_id = sim.accept(account, pdu, now, answered)
            if answered:
                self._respond(
                    message_id_resp(command_id, 0, pdu.sequence, message_id.encode("ascii"))
                )
                if pdu.registered_delivery & 0x03:
                    sim.schedule_receipt(
                        ReceiptJob(
                            account.account.system_id,
                            message_id,
                            sim.wall_offset + now,
                            pdu.source_addr,
                            pdu.source_addr_ton,
                            pdu.source_addr_npi,
                            pdu.destination_addr,
                            pdu.dest_addr_ton,
                            pdu.dest_addr_npi,
                            receipt_text_field(
                                pdu.short_message if isinstance(pdu, SubmitSm) else b"",
                                pdu.data_coding,
                                pdu.esm_class,
                            ),
                            pdu.registered_delivery,
                        ),
                        account,
                    )
        drop = faults.drop_after_submits
        if drop is not None and self.submit_count >= drop:
            counters.drops += 1
            self.closing = True

    def _refused_dest(self, destination: str) -> int:
        """The status a refused destination (a ported number) gets, counted; 0 otherwise.

        Checked before the throttle: an SMSC that knows the number has left refuses it
        whatever the rate, and the refusal does not use up the account's window."""
        status = self.sim.rejects.match(destination)
        if status:
            self.sim.counters.submits_dest_refused += 1
        return status

    def _respond(self, data: bytes) -> None:
        if self.sim.faults.response_delay > 0:
            self._late.append(data)
        else:
            self._out.append(data)
        if self.sim.pdulog is not None:
            self.sim.pdulog.write(self.sim.name, self.peer, "out", decode(data))

    # ------------------------------------------------------------------ deliver_sm out
    def deliver_room(self) -> int:
        if not self.can_receive or self.closing:
            return 0
        return self.sim.config.deliver_window - len(self.outstanding)

    def send_deliver(self, item: OutItem) -> None:
        seq = self._next_seq()
        pdu = item.pdu
        pdu.sequence = seq
        item.attempts += 1
        self.outstanding[seq] = (item, self.loop.time())
        self.sim.counters.count_sent(item.kind)
        self.send_pdu(pdu)

    def _on_deliver_resp(self, sequence: int, status: int) -> None:
        entry = self.outstanding.pop(sequence, None)
        if entry is None:
            return  # late answer to a deliver_sm already given up on, or a stray nack
        item = entry[0]
        if status == 0:
            self.sim.counters.count_acked(item.kind)
        else:
            self.sim.retry_later(item, self.sim.config.deliver_retry_delay)

    # ------------------------------------------------------------------ housekeeping
    def check_timers(self, now: float) -> None:
        """Retry deliver_sm not answered in time; keep an idle link alive (or give up)."""
        sim = self.sim
        outstanding = self.outstanding
        if outstanding:
            edge = now - sim.config.deliver_timeout
            expired = []
            for seq, (_, sent_at) in outstanding.items():
                if sent_at > edge:
                    break  # insertion order is send order
                expired.append(seq)
            for seq in expired:
                item = outstanding.pop(seq)[0]
                sim.retry_later(item, 0.0)
        interval = sim.config.enquire_link_interval
        if interval > 0 and self.mode is not None and not self.closing:
            if self.enquire_sent_at is not None:
                if now - self.enquire_sent_at >= interval:
                    sim.counters.link_timeouts += 1
                    self.abort()
            elif now - self.last_rx >= interval:
                self.enquire_sent_at = now
                sim.counters.enquire_links_sent += 1
                self.send_pdu(_enquire_link(self._next_seq()))

    async def unbind(self, timeout: float) -> None:
        """Unbind from the SMSC side (on shutdown) and close."""
        if self.mode is None or self.closing:
            self.close()
            return
        self.unbind_answered = self.loop.create_future()
        self.send_pdu(Unbind(sequence=self._next_seq()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.unbind_answered, timeout)
        self.close()


def _enquire_link(sequence: int) -> Pdu:
    cls = PDU_CLASSES[CommandId.ENQUIRE_LINK]
    return cls(sequence=sequence)
