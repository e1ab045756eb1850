"""What to do when an SMSC refuses a submit_sm: reject the job, retry it, or slow down.

The SMPP 3.4 error table (section 5.1.3) says what each command_status means but not what a
client should do about it, and carriers disagree (some send ESME_RSYSERR for a barred
number, others ESME_RSUBMITFAIL for a full queue). So the decision is a table with sensible
defaults that a carrier's config can override status by status, instead of ``if`` chains in
the sending code.

Defaults, in short: statuses that describe *this message* (bad address, bad coding, bad
TLV, expired validity) are permanent, since resending the same bytes cannot succeed;
statuses that describe *the SMSC's state* (system error, submit failed, temporary app
error) are transient; ESME_RTHROTTLED and ESME_RMSGQFUL mean "slow down" and pause the
whole carrier. A status we do not know (vendor codes) is transient: the retry budget is
bounded, and wrongly rejecting a payment reminder is worse than three extra attempts.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from smppgw.smpp.constants import Status, status_name


class Action(StrEnum):
    #: The job is rejected with the status name as its error code.
    PERMANENT = "permanent"
    #: The job is retried with exponential back-off, up to ``max_retries``.
    TRANSIENT = "transient"
    #: The carrier pauses and the message goes back to the head of its lane.
    THROTTLE = "throttle"


_THROTTLE = (Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL)

_TRANSIENT = (
    Status.ESME_RSYSERR,
    Status.ESME_RSUBMITFAIL,
    Status.ESME_RX_T_APPN,
    Status.ESME_RDELIVERYFAILURE,
    Status.ESME_RUNKNOWNERR,
    # The session's bind state was wrong for the SMSC (e.g. mid-rebind): another try
    # on a fresh bind normally works.
    Status.ESME_RINVBNDSTS,
    Status.ESME_RALYBND,
)

_PERMANENT = (
    Status.ESME_RINVMSGLEN,
    Status.ESME_RINVCMDLEN,
    Status.ESME_RINVCMDID,
    Status.ESME_RINVPRTFLG,
    Status.ESME_RINVREGDLVFLG,
    Status.ESME_RINVSRCADR,
    Status.ESME_RINVDSTADR,
    Status.ESME_RINVMSGID,
    Status.ESME_RINVSERTYP,
    Status.ESME_RINVNUMDESTS,
    Status.ESME_RINVDLNAME,
    Status.ESME_RINVDESTFLAG,
    Status.ESME_RINVSUBREP,
    Status.ESME_RINVESMCLASS,
    Status.ESME_RCNTSUBDL,
    Status.ESME_RINVSRCTON,
    Status.ESME_RINVSRCNPI,
    Status.ESME_RINVDSTTON,
    Status.ESME_RINVDSTNPI,
    Status.ESME_RINVSYSTYP,
    Status.ESME_RINVREPFLAG,
    Status.ESME_RINVNUMMSGS,
    Status.ESME_RINVSCHED,
    Status.ESME_RINVEXPIRY,
    Status.ESME_RINVDFTMSGID,
    Status.ESME_RX_P_APPN,
    Status.ESME_RX_R_APPN,
    Status.ESME_RINVOPTPARSTREAM,
    Status.ESME_ROPTPARNOTALLWD,
    Status.ESME_RINVPARLEN,
    Status.ESME_RMISSINGOPTPARAM,
    Status.ESME_RINVOPTPARAMVAL,
    Status.ESME_RINVDCS,
)

DEFAULT_POLICY: Mapping[int, Action] = {
    **{int(s): Action.THROTTLE for s in _THROTTLE},
    **{int(s): Action.TRANSIENT for s in _TRANSIENT},
    **{int(s): Action.PERMANENT for s in _PERMANENT},
}

#: What a status missing from the table gets.
DEFAULT_ACTION = Action.TRANSIENT


def parse_status(key: str | int) -> int:
    """A status as written in config: ``ESME_RSYSERR``, ``RSYSERR``, ``0x45`` or ``69``."""
    if isinstance(key, int):
        return key
    text = key.strip()
    upper = text.upper()
    if upper in Status.__members__:
        return int(Status[upper])
    if "ESME_" + upper in Status.__members__:
        return int(Status["ESME_" + upper])
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(
            f"{key!r} is not an SMPP command_status (a name like ESME_RSYSERR, or a number)"
        ) from None


class ErrorPolicy:
    """The table for one carrier: defaults plus that carrier's overrides."""

    __slots__ = ("_table",)

    def __init__(self, overrides: Mapping[str, str] | Mapping[int, str] | None = None) -> None:
        table = dict(DEFAULT_POLICY)
        for key, value in (overrides or {}).items():
            try:
                action = Action(str(value).lower())
            except ValueError:
                choices = ", ".join(a.value for a in Action)
                raise ValueError(
                    f"error_policy[{key!r}]: {value!r} is not one of {choices}"
                ) from None
            table[parse_status(key)] = action
        self._table = table

    def classify(self, status: int) -> Action:
        """What to do about a non-zero command_status in a submit response."""
        return self._table.get(status, DEFAULT_ACTION)

    def describe(self, status: int) -> str:
        """``ESME_RINVDSTADR`` for known statuses, ``0x00000401`` for vendor ones (error codes)."""
        name = status_name(status)
        if name in ("UNKNOWN", "VENDOR_SPECIFIC"):
            return f"0x{status:08x}"
        return name
