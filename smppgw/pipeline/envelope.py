"""The MQTT envelope of a job: may it be taken, and where may its events be echoed?

A job's MQTT 5 Response Topic is a topic the *publisher* names and the gateway then
publishes to, with its own broker account. Taken as is, it lets any publisher make the
gateway publish where the publisher itself may not (another job's ``sms/status/<id>``,
another service's command topic, ``$SYS``), or to a topic no broker accepts a PUBLISH on
(``x/#``: mosquitto disconnects the gateway, and the event stays in the outbox to do it
again after every reconnect and restart). So the envelope is checked at intake, before
anything is stored: a job whose Response Topic or Correlation Data is refused is
``rejected`` (code ``invalid``, the field named) on ``<status_topic>/<id>`` only, and the
refused topic and data are never stored, so no event ever goes there.

A job published with the retain flag is refused too: the broker would hand it again to
every new session subscribing to the submit topic (a new gateway instance, or the same
one after its dedup key was purged), and it would be sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smppgw.config import MqttConfig
from smppgw.mqtt.publishable import topic_name_problem

if TYPE_CHECKING:  # the config parser imports this module: no gmqtt for check-config
    from smppgw.mqtt import Message

#: Longest Response Topic accepted, in UTF-8 octets: room for any sane reply topic
#: (``shop/replies/<64-char id>``), small enough to store per job without thought.
MAX_RESPONSE_TOPIC = 256
#: Topic (next to the status topic: ``sms/status-unmatched``) for unmatched receipts.
UNMATCHED_SUFFIX = "unmatched"
RETAINED = "retained: jobs must not be published with retain"


def own_topics(mqtt: MqttConfig) -> tuple[str, ...]:
    """The roots of the gateway's own topic tree: each, and everything below it, is the
    gateway's (jobs and cancels in, events out), never a reply address."""
    status = mqtt.status_topic.rstrip("/")
    return (
        mqtt.submit_topic.rstrip("/"),
        status,
        mqtt.inbound_topic.rstrip("/"),
        mqtt.rejected_topic.rstrip("/"),
        mqtt.cancel_topic.rstrip("/"),
        mqtt.consent_topic.rstrip("/"),
        mqtt.reply_topic.rstrip("/"),
        f"{status}-{UNMATCHED_SUFFIX}",
    )


def under(topic: str, root: str) -> bool:
    """``topic`` is ``root`` or below it (``a/b`` is under ``a``; ``ab`` is not)."""
    return topic == root or topic.startswith(root + "/")


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__
# (~2.4x the time), and one is built per job; nothing assigns to one after that.
@dataclass(slots=True)
class Envelope:
    """What intake may use of a job's MQTT envelope."""

    #: Every refusal, each naming its field (empty: the envelope is fine).
    problems: tuple[str, ...]
    #: The Response Topic and Correlation Data to store with the job; both ``None`` when
    #: there is none, or when either was refused.
    response_topic: str | None
    correlation_data: bytes | None


class EnvelopeGuard:
    """Checks the Response Topic, the Correlation Data and the retain flag of a job."""

    __slots__ = ("_max_correlation", "_own", "_prefixes")

    def __init__(self, mqtt: MqttConfig) -> None:
        self._own = own_topics(mqtt)
        self._prefixes = mqtt.response_prefixes
        self._max_correlation = mqtt.max_correlation

    def check(self, message: Message) -> Envelope:
        problems: list[str] = []
        topic = message.response_topic
        if topic is not None:
            problem = self.topic_problem(topic)
            if problem is not None:
                problems.append(f"response_topic: {problem}")
        data = message.correlation_data
        if data is not None and len(data) > self._max_correlation:
            problems.append(
                f"correlation_data: {len(data)} bytes, over the {self._max_correlation}-byte "
                "limit (mqtt.max_correlation)"
            )
        reply_refused = bool(problems)
        if message.retain:
            problems.append(RETAINED)
        if reply_refused or topic is None:
            return Envelope(tuple(problems), None, None)
        return Envelope(tuple(problems), topic, data)

    def topic_problem(self, topic: str) -> str | None:
        """Why the gateway must not publish a job's events to ``topic``, or ``None``.

        The reasons never quote the topic: it is the publisher's text, and a status event
        is not the place to echo it."""
        # What no broker takes a PUBLISH to (wildcards, NUL, control characters, '$'...):
        # the same rules the outbox applies before it publishes anything.
        problem = topic_name_problem(topic)
        if problem is not None:
            return problem.removeprefix("topic ")  # the field is named by the caller
        size = len(topic.encode("utf-8", "surrogatepass"))
        if size > MAX_RESPONSE_TOPIC:
            return f"{size} bytes, over the {MAX_RESPONSE_TOPIC}-byte limit"
        for root in self._own:
            if under(topic, root):
                return f"inside the gateway's own topic tree ({root})"
        if self._prefixes and not any(under(topic, p) for p in self._prefixes):
            return f"not under mqtt.response_prefixes ({', '.join(self._prefixes)})"
        return None
