"""What every part of one carrier shares: its config, whom it reports to, its counters.

The parts (:mod:`~smppgw.engine.results`, :mod:`~smppgw.engine.receipts`,
:mod:`~smppgw.engine.mo`, ...) each own their own state; these four they only use, so they
get them once, from :class:`CarrierPart`, rather than each taking and storing them again.
"""

from __future__ import annotations

from dataclasses import dataclass

from smppgw.config import CarrierConfig
from smppgw.engine.observers import CarrierEvents, CarrierObserver, CarrierStats


@dataclass(frozen=True, slots=True)
class CarrierContext:
    config: CarrierConfig
    events: CarrierEvents
    observer: CarrierObserver
    counters: CarrierStats


class CarrierPart:
    """Base of a carrier's parts: the shared context as attributes."""

    __slots__ = ("config", "counters", "events", "name", "observer")

    def __init__(self, ctx: CarrierContext) -> None:
        self.config = ctx.config
        self.name = ctx.config.name
        self.events = ctx.events
        self.observer = ctx.observer
        self.counters = ctx.counters
