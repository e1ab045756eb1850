"""Consent from MO keywords, and the marketing rules of the running config.

An MO whose whole text is an opt-out keyword (``STOP``, ``HỦY``, ``Từ chối`` ...,
compared by :func:`~smppgw.pipeline.keywords.normalize_keyword`) opts its sender out of
marketing jobs; an opt-in keyword (``START``, ``DK``) opts it back in; a help keyword gets
``consent.help_reply``. :class:`ConsentDesk` turns one MO into a :class:`MoPlan`: the
consent change with its ``sms/consent`` event, and the reply jobs. The store records the
plan with the MO's own inbound event in one transaction (``Store.record_mo``), and only then
is the deliver_sm answered, so an opt-out is never acknowledged to the SMSC and lost.

Replies go back to the customer from the number they wrote to (the MO's ``to``: a short
code or long number), routed like any transactional job, under a gateway-made job id
(``smppgw:help:<number>:<ms>``, ``smppgw:optout:<number>:<ms>``) whose status events go
to ``sms/status/<that id>`` like any other.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from smppgw.config import CarrierConfig, Config, ConsentConfig
from smppgw.mqtt.schema import ConsentEvent, encode_event, format_at
from smppgw.pipeline.keywords import normalize_keyword
from smppgw.pipeline.marketing import MarketingGate, decorate
from smppgw.pipeline.routing import Router, RoutingError, normalize_msisdn, sender_source
from smppgw.store import ConsentChange, OutboxEvent, StoredJob

#: Prefix of the ids of jobs the gateway makes itself (keyword replies).
REPLY_ID_PREFIX = "smppgw:"
#: The keyword recorded for ``consent.mo_is_optin`` (any MO from a new number).
MO_KEYWORD = "mo"
#: Lane of keyword replies: ``normal``.
_REPLY_LANE = 1


def consent_payload(
    number: str,
    action: str,
    keyword: str | None,
    carrier: str | None,
    at: float,
    source: str,
) -> bytes:
    """The ``sms/consent`` event of one change."""
    return encode_event(
        ConsentEvent(
            number=number,
            action=action,  # type: ignore[arg-type]
            keyword=keyword,
            carrier=carrier,
            at=format_at(at),
            source=source,
        )
    )


class Keywords:
    """The configured keywords, by normalised form: what a whole MO text means."""

    __slots__ = ("_meaning",)

    def __init__(self, consent: ConsentConfig) -> None:
        self._meaning: dict[str, tuple[str, str]] = {}
        for action, keywords in (
            ("opt_out", consent.optout_keywords),
            ("opt_in", consent.optin_keywords),
            ("help", consent.help_keywords),
        ):
            for keyword in keywords:
                self._meaning.setdefault(normalize_keyword(keyword), (action, keyword))

    def match(self, text: str) -> tuple[str, str] | None:
        """(``opt_out`` | ``opt_in`` | ``help``, the configured keyword) or None."""
        norm = normalize_keyword(text)
        return self._meaning.get(norm) if norm else None


@dataclass(slots=True)
class MoPlan:
    """What one MO does besides its inbound event."""

    change: ConsentChange | None = None
    #: Jobs sent whatever the store holds (help replies).
    replies: list[StoredJob] = field(default_factory=list)
    #: Jobs sent only when ``change`` changed something (the opt-out confirmation).
    reply_on_change: list[StoredJob] = field(default_factory=list)


class ConsentDesk:
    """The ``consent:`` rules of the running config: the marketing gate, the text label and
    the keywords. Rebuilt whole on reload (``reconfigure``)."""

    def __init__(self, config: Config, router: Router) -> None:
        self.reconfigure(config, router)

    def reconfigure(self, config: Config, router: Router) -> None:
        self.consent = config.consent
        self.gate = MarketingGate(config.consent)
        self.keywords = Keywords(config.consent)
        self._router = router
        self._country_code = config.routing.country_code
        self._carriers: dict[str, CarrierConfig] = {c.name: c for c in config.carriers}
        self._topic = config.mqtt.consent_topic

    def decorate(self, text: str) -> str:
        """A marketing text with the configured label first and footer last."""
        return decorate(text, self.consent.marketing_prefix, self.consent.marketing_footer)

    def plan(self, carrier: str, source: str, destination: str, text: str, now: float) -> MoPlan:
        """What an MO from ``source`` to ``destination`` with ``text`` changes."""
        try:
            number = normalize_msisdn(source, self._country_code)
        except RoutingError:
            return MoPlan()  # an alphanumeric or broken sender: nobody to record
        meaning = self.keywords.match(text)
        consent = self.consent
        if meaning is None:
            if not consent.mo_is_optin:
                return MoPlan()
            change = self._change(number, "opt_in", MO_KEYWORD, carrier, now)
            change.only_if_unknown = True
            return MoPlan(change)
        action, keyword = meaning
        if action == "help":
            reply = self._reply("help", number, destination, consent.help_reply, now)
            return MoPlan(replies=reply)
        change = self._change(number, action, keyword, carrier, now)
        if action == "opt_out":
            reply = self._reply("optout", number, destination, consent.optout_reply, now)
            return MoPlan(change, reply_on_change=reply)
        return MoPlan(change)

    def _change(
        self, number: str, action: str, keyword: str, carrier: str, now: float
    ) -> ConsentChange:
        payload = consent_payload(number, action, keyword, carrier, now, "mo")
        return ConsentChange(
            number=number,
            action=action,
            keyword=keyword,
            source="mo",
            carrier=carrier,
            events=[OutboxEvent(self._topic, payload)],
        )

    def _reply(
        self, kind: str, number: str, sender: str, text: str | None, now: float
    ) -> list[StoredJob]:
        """The reply job (none without a text or a route): from the number the customer
        wrote to, when that is a usable sender, else the carrier's default."""
        if not text:
            return []
        try:
            carrier = self._router.route(number)
        except RoutingError:
            return []
        try:
            source = sender_source(sender, self._country_code)
        except RoutingError:
            source = None
        return [
            StoredJob(
                job_id=f"{REPLY_ID_PREFIX}{kind}:{number}:{round(now * 1000)}",
                carrier=carrier,
                lane=_REPLY_LANE,
                destination=number,
                text=unicodedata.normalize("NFC", text),
                source=source,
                dlr=self._carriers[carrier].registered_delivery,
                received_at=now,
            )
        ]
