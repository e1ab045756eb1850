"""The marketing rules as a release check of the held jobs (``Holds.add_check``).

A marketing job held for the marketing window, a deferred cap or its own ``send_at`` is
decided again when it comes due: the number may have opted out meanwhile, or used up its
daily cap, or the hours may have changed (a reload). The store decides and moves the job's
count in the rolling 24 h in one transaction (``Store.marketing_release``); any other
held job is let go at once, without asking the store.
"""

from __future__ import annotations

from smppgw.ops.telemetry import Telemetry
from smppgw.pipeline.consent import ConsentDesk
from smppgw.pipeline.holds import GO, Decision, HoldUntil, ReleaseCheck
from smppgw.pipeline.holds import Reject as Refuse
from smppgw.pipeline.marketing import Hold, Reject
from smppgw.store import StoredJob
from smppgw.store.contract import StoreAPI


def marketing_check(store: StoreAPI, consent: ConsentDesk, telemetry: Telemetry) -> ReleaseCheck:
    """The release check of ``consent``'s rules (the running config's, reloads included)."""

    async def check(job: StoredJob, now: float) -> Decision:
        if job.category != "marketing":
            return GO  # no store round trip for the other held jobs
        decision = await store.marketing_release(job.job_id, consent.gate, now)
        if isinstance(decision, Hold):
            if decision.reason == "cap":
                telemetry.marketing_cap("defer")
            return HoldUntil(decision.until, decision.reason)
        if isinstance(decision, Reject):
            if decision.code == "frequency_cap":
                telemetry.marketing_cap("reject")
            telemetry.job_rejected(decision.code)
            return Refuse(decision.code, decision.reason)
        return GO

    return check
