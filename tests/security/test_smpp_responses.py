"""Finding 6: a hostile SMSC answering with the wrong response, over real TCP.

Each test runs a real :class:`~smppgw.engine.carrier.Carrier` against a raw TCP "SMSC" that
writes exactly the PDUs the test chooses:

* a ``generic_nack`` with status 0 (or another command's response) answering the bind is
  not a bind: the session never counts as bound, and the refusal is counted;
* a response with the submit's sequence but the wrong command does not make the job
  ``submitted`` (it ends ``failed`` / ``unknown_outcome``) and the malformed response is
  counted; a ``generic_nack`` with status 0 rejects the job with ``ESME_RINVCMDID``;
* a submit_sm_resp whose message_id is longer than SMPP's 64 octets is not kept: the job
  ends ``unknown_outcome`` and is **not** resent even with ``resend_on_timeout``, because
  the SMSC said it took it;
* a receipt whose id is longer than 64 octets is acknowledged and dropped, not held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from smppgw.config import CarrierConfig, Secret
from smppgw.engine.carrier import Carrier
from smppgw.engine.message import OutboundMessage
from smppgw.smpp.codec import decode, encode
from smppgw.smpp.constants import CommandId, Status
from smppgw.smpp.errors import PduError
from smppgw.smpp.pdu import (
    BIND_CLASSES,
    BindTransceiverResp,
    DeliverSmResp,
    GenericNack,
    Pdu,
    SubmitSmResp,
)

from engine.conftest import Recorder, until
from reliability.evil import EvilConnection, EvilSmsc, header, receipt

BIND_IDS = {cls.command_id for cls in BIND_CLASSES.values()}
#: What the hostile SMSC writes back for one request it received: raw octets, or None.
Answer = Callable[[Pdu], bytes | None]


class Counting:
    """Records what the carrier reports as malformed (the smppgw_malformed_pdus_total
    source) and its bind results, through the real observer interface."""

    def __init__(self) -> None:
        self.malformed = 0
        self.binds: list[int | str] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None

    def malformed_pdu(self, carrier: str) -> None:
        self.malformed += 1

    def bind_result(self, carrier: str, result: int | str) -> None:
        self.binds.append(result)


class HostileSmsc(EvilSmsc):
    """Accepts connections and answers each request the gateway sends, the bind included,
    with ``answer`` (EvilSmsc's server, not its always-successful bind)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer
        self.received: list[Pdu] = []

    async def serve(self, conn: EvilConnection) -> None:
        try:
            while not conn.eof:
                pdu = await conn.read_pdu(30.0)
                if pdu is None:
                    continue
                self.received.append(pdu)
                if pdu.command_id & 0x80000000:
                    continue  # the gateway's deliver_sm_resp
                data = self.answer(pdu)
                if data is not None:
                    conn.write(data)
                    await conn.drain()
        finally:
            conn.close()

    def submits(self) -> int:
        return sum(1 for p in self.received if p.command_id == CommandId.SUBMIT_SM)


def bind_ok(pdu: Pdu) -> bytes | None:
    if pdu.command_id in BIND_IDS:
        return encode(BindTransceiverResp(sequence=pdu.sequence, system_id="evil"))
    if pdu.command_id == CommandId.ENQUIRE_LINK:
        return encode(pdu.response())
    return None


def config(port: int, **overrides: Any) -> CarrierConfig:
    settings: dict[str, Any] = {
        "name": "evil",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "shop",
        "password": Secret("pw"),
        "response_timeout": 2.0,
        "bind_timeout": 2.0,
        "reconnect_min": 0.05,
        "reconnect_max": 0.1,
        "receipt_hold": 3.0,
        **overrides,
    }
    return CarrierConfig(**settings)


@contextlib.asynccontextmanager
async def running(
    answer: Answer, **overrides: Any
) -> AsyncIterator[tuple[Carrier, HostileSmsc, Recorder, Counting]]:
    events = Recorder()
    observer = Counting()
    async with HostileSmsc(answer) as smsc:
        carrier = Carrier(config(smsc.port, **overrides), events, observer=observer)
        await carrier.start()
        try:
            yield carrier, smsc, events, observer
        finally:
            await carrier.stop(1.0)


async def one_job(carrier: Carrier, events: Recorder, job_id: str = "j1") -> tuple[Any, ...]:
    await until(lambda: carrier.ready, 5.0, "bind")
    carrier.submit(OutboundMessage(job_id=job_id, destination="84912345678", text="OTP 123456"))
    await until(lambda: job_id in events.outcomes(), 10.0, f"outcome of {job_id}")
    outcome = events.outcome(job_id)
    return (outcome.kind, *outcome.args)


def answer_submit(make: Callable[[Pdu], bytes]) -> Answer:
    def answer(pdu: Pdu) -> bytes | None:
        if pdu.command_id == CommandId.SUBMIT_SM:
            return make(pdu)
        return bind_ok(pdu)

    return answer


# ----------------------------------------------------------------------------- bind


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(lambda seq: encode(GenericNack(sequence=seq, status=0)), id="generic_nack-0"),
        pytest.param(
            lambda seq: encode(SubmitSmResp(sequence=seq, message_id="x")), id="wrong-resp"
        ),
    ],
)
async def test_a_bind_answered_by_anything_but_its_bind_resp_is_not_a_bind(
    reply: Callable[[int], bytes],
) -> None:
    def answer(pdu: Pdu) -> bytes | None:
        return reply(pdu.sequence) if pdu.command_id in BIND_IDS else None

    async with running(answer) as (carrier, _smsc, _events, observer):
        await until(lambda: len(observer.binds) >= 2, 5.0, "two bind attempts")
        assert not carrier.ready
        assert not any(k.bound for k in carrier.keepers)
        assert carrier.stats()["binds"] == 0
        assert observer.malformed >= 2
        assert Status.ESME_ROK not in observer.binds, observer.binds
        print(f"bind results: {observer.binds[:4]}, last error: {carrier.keepers[0].last_error}")


# ----------------------------------------------------------------------------- submit


async def test_a_generic_nack_fails_the_submit_and_status_0_is_no_success() -> None:
    statuses = iter([0, Status.ESME_RINVDSTADR])
    answer = answer_submit(
        lambda pdu: encode(GenericNack(sequence=pdu.sequence, status=next(statuses)))
    )
    async with running(answer) as (carrier, smsc, events, observer):
        zero = await one_job(carrier, events, "j1")
        error = await one_job(carrier, events, "j2")
    assert zero[0] == "finished" and zero[2:4] == ("rejected", "ESME_RINVCMDID"), zero
    assert error[0] == "finished" and error[2:4] == ("rejected", "ESME_RINVDSTADR"), error
    assert smsc.submits() == 2
    assert observer.malformed == 1  # only the nonsensical status-0 nack


async def test_a_response_of_the_wrong_command_is_a_protocol_error_not_an_acceptance() -> None:
    answer = answer_submit(lambda pdu: encode(DeliverSmResp(sequence=pdu.sequence)))
    async with running(answer, resend_on_timeout=True) as (carrier, smsc, events, observer):
        outcome = await one_job(carrier, events)
        await asyncio.sleep(0.3)
        print(f"outcome: {outcome}")
        assert outcome[0] == "finished", outcome
        assert outcome[2:4] == ("failed", "unknown_outcome"), outcome
        assert "deliver_sm_resp" in outcome[4] and "submit_sm" in outcome[4]
        # It said ESME_ROK: the SMSC may have taken it, so it is not sent again.
        assert smsc.submits() == 1
        assert observer.malformed == 1
        # The session stays up: one confused response is not worth every other window.
        assert carrier.ready


async def test_an_oversized_message_id_is_never_kept_and_never_resent() -> None:
    exact, long_id = "B" * 64, "A" * 5000
    ids = iter([exact, long_id])

    def make(pdu: Pdu) -> bytes:
        body = next(ids).encode() + b"\x00"
        return header(16 + len(body), CommandId.SUBMIT_SM_RESP, 0, pdu.sequence) + body

    async with running(answer_submit(make), resend_on_timeout=True) as (
        carrier,
        smsc,
        events,
        observer,
    ):
        fits = await one_job(carrier, events, "j1")
        outcome = await one_job(carrier, events, "j2")
        await asyncio.sleep(0.3)
        assert smsc.submits() == 2, "accepted (status 0) must not be resent"
        assert len(carrier.matcher) == 1  # only the 64-octet id is kept for receipts
    print(f"outcome: {outcome[:4]} reason: {outcome[4][:160]}")
    assert fits == ("submitted", "j1", [exact])
    assert outcome[0] == "finished" and outcome[2:4] == ("failed", "unknown_outcome"), outcome
    assert long_id not in outcome[4]
    assert "message_id: 5000 octets, at most 64" in outcome[4]
    assert observer.malformed == 1


async def test_a_receipt_with_an_oversized_id_is_acknowledged_and_dropped_at_once() -> None:
    async with running(bind_ok) as (carrier, smsc, events, _observer):
        await until(lambda: carrier.ready and smsc.connections, 5.0, "bind")
        conn = smsc.connections[0]
        conn.write(receipt(conn.next_seq(), "F" * 120))
        await conn.drain()
        await until(
            lambda: any(p.command_id == CommandId.DELIVER_SM_RESP for p in smsc.received),
            # Held for matching (receipt_hold 3 s) before this change.
            1.5,
            "deliver_sm_resp",
        )
        assert carrier.counters.receipts_unreadable == 1
        assert carrier.counters.receipts_held == 0
        assert not events.of("unmatched")


@pytest.mark.parametrize("nul", [b"\x00", b""], ids=["nul", "no-nul"])
def test_the_decoder_bounds_message_id_to_64_octets(nul: bytes) -> None:
    for length, ok in ((64, True), (65, False)):
        body = b"7" * length + nul
        frame = header(16 + len(body), CommandId.SUBMIT_SM_RESP, 0, 9) + body
        if ok:
            assert decode(frame).message_id == "7" * length  # type: ignore[attr-defined]
        else:
            with pytest.raises(PduError, match="message_id: 65 octets, at most 64"):
                decode(frame)
