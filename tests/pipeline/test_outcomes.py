"""The outcome layer (``GatewayEvents``): a carrier's outcomes become store writes, outbox
events and metrics in one place. Real SQLite store, real metrics registry; the "carrier" is
these tests calling the ``CarrierEvents`` methods as the carrier does."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from smppgw.config import CarrierConfig, MqttConfig
from smppgw.engine.message import OutboundMessage
from smppgw.ops.metrics import Metrics
from smppgw.ops.telemetry import Telemetry
from smppgw.pipeline.outcomes import EventFactory, GatewayEvents
from smppgw.smpp.receipt import Receipt
from smppgw.store import Store, StoredJob

CARRIER = "viettel"


class Outcomes:
    """A GatewayEvents over a real store, with what its callbacks reported."""

    def __init__(self, store: Store, config: CarrierConfig) -> None:
        self.store = store
        self.metrics = Metrics(process_metrics=False)
        carriers = {config.name: config}
        self.woken = 0
        self.left: list[str] = []
        self.events = GatewayEvents(
            store,
            EventFactory(MqttConfig()),
            Telemetry(self.metrics, carriers),
            self._wake,
            on_left=self.left.append,
        )

    def _wake(self) -> None:
        self.woken += 1

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def claimed(self, job: StoredJob) -> OutboundMessage:
        """Add ``job`` and claim it, as intake and the feeder do; the carrier's message."""
        await self.store.add_jobs([job])
        (claimed,) = await self.store.claim(CARRIER, 1, time.time())
        return claimed.outbound()

    async def published(self) -> list[tuple[str, dict[str, object], bytes | None]]:
        return [
            (e.topic, orjson.loads(e.payload), e.correlation_data)
            for e in await self.store.pending_events(100)
        ]


@pytest.fixture
async def outcomes(tmp_path: Path) -> AsyncIterator[Outcomes]:
    config = CarrierConfig(name=CARRIER, host="h", port=1, system_id="s")
    async with Store(str(tmp_path / "gw.db")) as store:
        yield Outcomes(store, config)


def job(job_id: str = "j1", **kw: object) -> StoredJob:
    fields: dict[str, object] = {
        "carrier": CARRIER,
        "lane": 0,
        "destination": "84912345678",
        "text": "hi",
        "received_at": time.time() - 2.0,
    }
    fields.update(kw)
    return StoredJob(job_id=job_id, **fields)  # type: ignore[arg-type]


def receipt(message_id: str, state: str) -> Receipt:
    return Receipt(message_id, state, True, None, None, None, None, None, None)


async def test_submitted_takes_the_job_context_from_the_message(outcomes: Outcomes) -> None:
    """The response topic, correlation data, lane and intake time come with the carrier's
    message (no lookup by id): the store records the job submitted with the ids as the
    carrier normalised them (not normalised again), both events go out, and the parts and
    queue latency are counted."""
    message = await outcomes.claimed(job(response_topic="app/replies", correlation_data=b"k1"))
    await outcomes.events.submitted(CARRIER, message, ["0A", "0B"], ["10", "11"])
    view = await outcomes.store.job("j1")
    assert view is not None and (view.state, view.status) == ("submitted", "submitted")
    assert await outcomes.store.lookup(CARRIER, "11") == ("j1", 1, 2)  # the key of 0B, part 1
    published = await outcomes.published()
    assert [(topic, corr) for topic, _, corr in published] == [
        ("sms/status/j1", None),
        ("app/replies", b"k1"),
    ]
    assert published[0][1]["message_ids"] == ["0A", "0B"]
    assert outcomes.left == ["j1"] and outcomes.woken == 1
    assert outcomes.sample("smppgw_parts_submitted_total", carrier=CARRIER) == 2
    latency = outcomes.sample("smppgw_queue_latency_seconds_sum", carrier=CARRIER, lane="high")
    assert latency >= 2.0


async def test_submitted_without_receipt_is_final(outcomes: Outcomes) -> None:
    message = await outcomes.claimed(job(dlr=False))
    await outcomes.events.submitted(CARRIER, message, ["1"], ["1"])
    view = await outcomes.store.job("j1")
    assert view is not None and view.state == "final"


async def test_a_message_not_made_from_a_stored_job_is_refused_by_name(
    outcomes: Outcomes,
) -> None:
    with pytest.raises(TypeError, match=re.escape("'x': not made by StoredJob.outbound()")):
        await outcomes.events.submitted(CARRIER, OutboundMessage("x", "1", "t"), ["1"], ["1"])


async def test_finished_records_one_final_status_and_counts_it(outcomes: Outcomes) -> None:
    message = await outcomes.claimed(job())
    await outcomes.events.finished(
        CARRIER, message, "rejected", "ESME_RINVDSTADR", "submit_sm: ESME_RINVDSTADR"
    )
    await outcomes.events.finished(CARRIER, message, "failed", "shutdown", "again")
    view = await outcomes.store.job("j1")
    assert view is not None and (view.status, view.error_code) == ("rejected", "ESME_RINVDSTADR")
    ((topic, payload, _),) = await outcomes.published()
    assert topic == "sms/status/j1"
    assert payload["error"] == {"code": "ESME_RINVDSTADR", "reason": "submit_sm: ESME_RINVDSTADR"}
    assert outcomes.left == ["j1"]  # once: the second finish changed nothing


async def test_receipts_use_0_based_parts_and_acceptd_counts_as_delivered(
    outcomes: Outcomes,
) -> None:
    """The part index is the same at the carrier interface and in the store; the job is
    delivered once every part is DELIVRD or ACCEPTD (one status table)."""
    message = await outcomes.claimed(job())
    await outcomes.events.submitted(CARRIER, message, ["A", "B"], ["10", "11"])
    found = await outcomes.events.lookup(CARRIER, "11")
    assert found == ("j1", 1, 2)
    await outcomes.events.receipt(CARRIER, "j1", 1, 2, receipt("B", "ACCEPTD"))
    view = await outcomes.store.job("j1")
    assert view is not None and view.part_states == [None, "ACCEPTD"]
    assert view.state == "submitted"
    await outcomes.events.receipt(CARRIER, "j1", 0, 2, receipt("A", "DELIVRD"))
    final = (await outcomes.published())[-1]
    assert final[1]["status"] == "delivered"
    assert outcomes.sample("smppgw_jobs_final_total", carrier=CARRIER, status="delivered") == 1
    assert outcomes.sample("smppgw_receipts_total", carrier=CARRIER, state="ACCEPTD") == 1


async def test_a_failed_part_names_itself_in_the_reason(outcomes: Outcomes) -> None:
    message = await outcomes.claimed(job())
    await outcomes.events.submitted(CARRIER, message, ["A", "B"], ["10", "11"])
    await outcomes.events.receipt(CARRIER, "j1", 0, 2, receipt("A", "ENROUTE"))
    await outcomes.events.receipt(CARRIER, "j1", 1, 2, receipt("B", "EXPIRED"))
    final = (await outcomes.published())[-1][1]
    assert final["status"] == "expired"
    assert final["error"] == {"code": "expired", "reason": "part 2: EXPIRED"}


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("DELIVRD", "delivered"),
        ("ACCEPTD", "delivered"),
        ("UNDELIV", "undelivered"),
        ("EXPIRED", "expired"),
        ("ENROUTE", "submitted"),
    ],
)
async def test_unmatched_receipt_status_follows_the_status_table(
    outcomes: Outcomes, state: str, status: str
) -> None:
    """The bug this layer had: an unmatched ACCEPTD (or EXPIRED) receipt was published as
    ``undelivered``, disagreeing with what a matched one makes of the job."""
    await outcomes.events.unmatched_receipt(CARRIER, receipt("77", state))
    ((topic, payload, _),) = await outcomes.published()
    assert topic == "sms/status-unmatched"
    assert payload["status"] == status
    assert payload["error"] == {"code": "unmatched_receipt", "reason": f"stat {state}"}
    assert outcomes.sample("smppgw_receipts_unmatched_total", carrier=CARRIER) == 1


async def test_inbound_is_committed_and_counted(outcomes: Outcomes) -> None:
    await outcomes.events.inbound(CARRIER, "84971234567", "8079", "Xin chào")
    ((topic, payload, _),) = await outcomes.published()
    assert topic == f"sms/inbound/{CARRIER}"
    assert (payload["from"], payload["to"], payload["text"]) == ("84971234567", "8079", "Xin chào")
    assert outcomes.sample("smppgw_mo_messages_total", carrier=CARRIER) == 1
