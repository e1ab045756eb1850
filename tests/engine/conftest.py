"""Fixtures for the engine tests: a real simulator over TCP, carriers, an event recorder.

Every carrier talks to a :class:`smppgw.sim.server.Simulator` on a free 127.0.0.1 port;
nothing is mocked. Timeouts and rates are small so the suite stays quick.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from smppgw.config import CarrierConfig, Secret
from smppgw.engine.carrier import Carrier
from smppgw.engine.message import OutboundMessage, Priority
from smppgw.sim.server import Faults, SimAccount, SimConfig, Simulator
from smppgw.smpp.receipt import Receipt

SYSTEM_ID = "shop"
PASSWORD = "pw-secret"


@dataclass
class Event:
    kind: str
    args: tuple[Any, ...]
    at: float = field(default_factory=time.monotonic)


class Recorder:
    """An in-memory CarrierEvents: records every call; can be made slow or failing."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        #: kind → seconds each call of that kind takes before it "is durable".
        self.delay: dict[str, float] = {}
        #: kind → how many more calls of that kind raise.
        self.fail: dict[str, int] = {}
        #: normalised id → (job_id, part, parts), what the store would answer.
        self.store: dict[str, tuple[str, int, int]] = {}
        #: kind → calls currently inside the coroutine.
        self.running: dict[str, int] = {}
        #: Job ids whose ``sending`` call returned, in order.
        self.armed: list[str] = []

    async def _hook(self, kind: str) -> None:
        self.running[kind] = self.running.get(kind, 0) + 1
        try:
            if self.delay.get(kind):
                await asyncio.sleep(self.delay[kind])
            if self.fail.get(kind, 0) > 0:
                self.fail[kind] -= 1
                raise RuntimeError(f"{kind}: injected failure")
        finally:
            self.running[kind] -= 1

    async def sending(self, carrier: str, job_ids: list[str]) -> None:
        await self._hook("sending")
        self.armed.extend(job_ids)

    async def submitted(
        self, carrier: str, message: OutboundMessage, message_ids: list[str], keys: list[str]
    ) -> None:
        await self._hook("submitted")
        self.events.append(Event("submitted", (message.job_id, list(message_ids))))

    async def finished(
        self, carrier: str, message: OutboundMessage, status: str, code: str, reason: str
    ) -> None:
        await self._hook("finished")
        self.events.append(Event("finished", (message.job_id, status, code, reason)))

    async def receipt(
        self, carrier: str, job_id: str, part: int, parts: int, receipt: Receipt
    ) -> None:
        await self._hook("receipt")
        self.events.append(Event("receipt", (job_id, part, parts, receipt)))

    async def unmatched_receipt(self, carrier: str, receipt: Receipt) -> None:
        await self._hook("unmatched")
        self.events.append(Event("unmatched", (receipt,)))

    async def inbound(self, carrier: str, source: str, destination: str, text: str) -> None:
        await self._hook("inbound")
        self.events.append(Event("inbound", (source, destination, text)))

    async def lookup(self, carrier: str, normalized_id: str) -> tuple[str, int, int] | None:
        await self._hook("lookup")
        self.events.append(Event("lookup", (normalized_id,)))
        return self.store.get(normalized_id)

    # -- queries
    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def outcomes(self) -> dict[str, list[Event]]:
        """job_id → its submitted/finished events (each job must have exactly one)."""
        out: dict[str, list[Event]] = {}
        for e in self.events:
            if e.kind in ("submitted", "finished"):
                out.setdefault(e.args[0], []).append(e)
        return out

    def outcome(self, job_id: str) -> Event:
        events = self.outcomes().get(job_id, [])
        assert len(events) == 1, f"{job_id}: {events}"
        return events[0]


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


def message(i: int, text: str | None = None, **kw: Any) -> OutboundMessage:
    return OutboundMessage(
        job_id=f"j{i}",
        destination=f"8491{i:07d}",
        text=text if text is not None else f"message {i}",
        **kw,
    )


def job_of(submit: Any) -> str:
    """The job id a simulator submit belongs to (tests put the index in the destination)."""
    return f"j{int(submit.pdu.destination_addr[4:])}"


SimFactory = Callable[..., Awaitable[Simulator]]
CarrierFactory = Callable[..., Awaitable[Carrier]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    sims: list[Simulator] = []

    async def make(
        *, tps: float | None = None, max_binds: int = 10, faults: Faults | None = None, **kw: Any
    ) -> Simulator:
        config = SimConfig(
            accounts=[SimAccount(SYSTEM_ID, PASSWORD, tps=tps, max_binds=max_binds)],
            faults=faults or Faults(),
            **kw,
        )
        sim = Simulator(config)
        await sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.stop(unbind_timeout=0.2)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def make_carrier(make_sim: SimFactory, recorder: Recorder) -> AsyncIterator[CarrierFactory]:
    """Carriers bound to a simulator; stopped (before the simulators) at teardown."""
    carriers: list[Carrier] = []

    async def make(
        sim: Simulator, *, events: Any = None, ready: bool = True, **overrides: Any
    ) -> Carrier:
        base = CarrierConfig(
            name="viettel",
            host="127.0.0.1",
            port=sim.port,
            system_id=SYSTEM_ID,
            password=Secret(PASSWORD),
            tps=200.0,
            window=10,
            response_timeout=2.0,
            bind_timeout=2.0,
            enquire_link_interval=5.0,
            reconnect_min=0.05,
            reconnect_max=0.5,
            throttle_backoff=0.1,
            throttle_backoff_max=1.0,
            max_retries=3,
            retry_backoff=0.05,
            receipt_hold=2.0,
            submit_id_base="hex",
            receipt_id_base="hex",
        )
        carrier = Carrier(dataclasses.replace(base, **overrides), events or recorder)
        carriers.append(carrier)
        await carrier.start()
        if ready:
            assert await carrier.wait_ready(5.0), "carrier did not bind"
        return carrier

    yield make
    for carrier in carriers:
        await carrier.stop(drain_timeout=1.0)


__all__ = ["Priority", "Recorder", "job_of", "message", "until"]
