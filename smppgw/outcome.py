"""What a delivery receipt's state means for a job: the one table.

A receipt's ``stat`` (SMPP 3.4 appendix B) says what happened to one *part*; the job's
status (``delivered`` / ``undelivered`` / ``expired``) follows from its parts' states. The
store decides a job's final status from this table, the outcome layer builds an event's
error reason from it, publishes unmatched receipts with it and the metrics take their
``state`` label values from it, so they cannot disagree.

It lives at the top of the package, importing nothing of the application, because the
store, the pipeline and the metrics all read it and none of them may import the others'
layers for it. Which submit_sm_resp statuses mean "slow down" is not here: that is each
carrier's error policy (:class:`smppgw.engine.policy.ErrorPolicy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple


class Meaning(NamedTuple):
    """What one part's receipt state says about the job."""

    #: The job status this state counts towards; ``None``: not decided yet (ENROUTE).
    status: str | None
    #: Nothing later changes this part's outcome.
    final: bool


DELIVERED = Meaning("delivered", True)
UNDELIVERED = Meaning("undelivered", True)
PENDING = Meaning(None, False)

#: Receipt state → meaning. ACCEPTD is final in SMPP 3.4 ("read on behalf of the
#: subscriber") and counts as delivered (README, "Status events").
RECEIPT_STATES: Mapping[str, Meaning] = {
    "DELIVRD": DELIVERED,
    "ACCEPTD": DELIVERED,
    "ENROUTE": PENDING,
    "UNDELIV": UNDELIVERED,
    "REJECTD": UNDELIVERED,
    "DELETED": UNDELIVERED,
    "UNKNOWN": UNDELIVERED,
    "EXPIRED": Meaning("expired", True),
}


def meaning(state: str) -> Meaning:
    """A state outside the table (a vendor's) decides nothing: the part stays pending."""
    return RECEIPT_STATES.get(state, PENDING)


def failed(state: str | None) -> bool:
    """Did this part's receipt say it will not be delivered (``undelivered`` / ``expired``)?"""
    if state is None:
        return False
    found = meaning(state)
    return found.final and found.status != "delivered"


def job_status(part_states: Sequence[str | None]) -> str | None:
    """The job's final status from its parts' latest receipt states, if it has one yet:
    the first failed part decides at once; ``delivered`` once every part is delivered."""
    for state in part_states:
        if state is not None and failed(state):
            return meaning(state).status
    if all(state is not None and meaning(state) is DELIVERED for state in part_states):
        return "delivered"
    return None


def unmatched_status(state: str) -> str:
    """The status an unmatched receipt is published with: its state's meaning, or
    ``submitted`` for a state that decides nothing yet (ENROUTE)."""
    return meaning(state).status or "submitted"
