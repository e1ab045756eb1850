"""Where an MO message goes: the job it answers, else the tenant it was written to.

1. **A reply.** The newest job to the MO's ``from`` with an open ``expect_reply`` window
   (the store looks it up in the transaction that stores the events) ties the MO to it:
   ``in_reply_to`` is that job's id, and besides its inbound topic the MO goes to
   ``<reply_topic>/<job key>`` and, when the job came with an MQTT 5 Response Topic, there
   with the job's Correlation Data. Matching is on the customer's number, never on the
   MO's ``to``: brandname senders are one-way, so the answer to ``SHOPVN`` arrives on a
   short code.
2. **"Text us".** An MO that answers no job goes to the tenant owning its ``to``
   (``tenants[].numbers``) or, failing that, the tenant whose ``tenants[].keywords`` has
   its first word (:func:`smppgw.pipeline.keywords.first_word`).
3. Anything else: the default topic, ``<inbound_topic>/<carrier>``, as always.

A tenant's MO goes to ``<inbound_topic>/<tenant>/<carrier>``, and a reply to a tenant's
job to ``<reply_topic>/<tenant>/<id>``: the same shape as its status topic
(``sms/status/<tenant>/<id>``), which the broker ACL can give that tenant alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from smppgw.config import Config, TenantConfig
from smppgw.mqtt.schema import InboundEvent, encode_event, format_at
from smppgw.pipeline.keywords import first_word
from smppgw.pipeline.routing import mo_number
from smppgw.store import OutboxEvent, ReplyWindow

#: The tenant that has no topic level of its own.
DEFAULT = "default"


class MoEvents:
    """Builds an MO's outbox events; pure, so it may run in the store's writer thread."""

    def __init__(
        self,
        *,
        inbound_topic: str = "sms/inbound",
        reply_topic: str = "sms/reply",
        country_code: str = "84",
        tenants: Iterable[TenantConfig] = (),
    ) -> None:
        self.inbound_topic = inbound_topic.rstrip("/")
        self.reply_topic = reply_topic.rstrip("/")
        self.country_code = country_code
        self._numbers: dict[str, str] = {}
        self._keywords: dict[str, str] = {}
        self.configure(tenants, country_code)

    @classmethod
    def from_config(cls, config: Config) -> MoEvents:
        return cls(
            inbound_topic=config.mqtt.inbound_topic,
            reply_topic=config.mqtt.reply_topic,
            country_code=config.routing.country_code,
            tenants=config.tenants,
        )

    def configure(self, tenants: Iterable[TenantConfig], country_code: str) -> None:
        """Take (re)loaded tenants' numbers and keywords; swapped whole, so an MO being
        built in the writer thread sees the old tables or the new ones, never a mix."""
        numbers: dict[str, str] = {}
        keywords: dict[str, str] = {}
        for tenant in tenants:
            for raw in tenant.numbers:
                numbers[mo_number(raw, country_code) or raw] = tenant.name
            for word in tenant.keywords:
                keywords[word] = tenant.name
        self.country_code = country_code
        self._numbers, self._keywords = numbers, keywords

    def number(self, address: str) -> str:
        """An MO's ``from`` as a job's destination is written (what reply windows key on)."""
        return mo_number(address, self.country_code) or address

    def tenant_for(self, to: str, text: str) -> str | None:
        """The tenant an MO that answers no job belongs to: by its ``to``, then by its
        first word; ``None`` (or ``"default"``): the default topic."""
        owner = self._numbers.get(self.number(to))
        if owner is None and self._keywords:
            owner = self._keywords.get(first_word(text))
        return None if owner == DEFAULT else owner

    def events(
        self,
        carrier: str,
        source: str,
        destination: str,
        text: str,
        now: float,
        window: ReplyWindow | None,
    ) -> list[OutboxEvent]:
        """The MO's events, given the reply window it falls in (or ``None``)."""
        if window is None:
            tenant = self.tenant_for(destination, text)
            reply_to = None
        else:
            tenant, slash, reply_to = window.job_id.rpartition("/")
            tenant = tenant if slash else None
        payload = encode_event(
            InboundEvent(
                carrier=carrier,
                sender=source,
                to=destination,
                text=text,
                at=format_at(now or time.time()),
                in_reply_to=reply_to,
            )
        )
        level = "" if tenant is None else f"{tenant}/"
        events = [OutboxEvent(f"{self.inbound_topic}/{level}{carrier}", payload)]
        if window is not None:
            events.append(OutboxEvent(f"{self.reply_topic}/{window.job_id}", payload))
            if window.response_topic:
                events.append(OutboxEvent(window.response_topic, payload, window.correlation_data))
        return events
