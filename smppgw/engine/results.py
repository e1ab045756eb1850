"""What a submit_sm's answer means for its job: accepted, throttled, retried, or failed.

Outcomes of one submit_sm (the status → action table is :mod:`smppgw.engine.policy`):

* accepted: the id is normalised and mapped to (job, part, parts) for receipt matching;
* THROTTLE: the carrier pauses (:mod:`smppgw.engine.pause`); the part goes back to the
  head of its lane, in the job's original order;
* permanent error: the job is ``rejected`` with the status name as code;
* transient error: the part is retried after ``retry_backoff * 2**(n-1)`` up to
  ``max_retries`` times, then the job is ``failed`` / ``retries_exhausted``;
* no response (timeout, or the connection dropped with it in the window): the outcome is
  unknown, and the job is ``failed`` / ``unknown_outcome`` -- unless the carrier opts into
  ``resend_on_timeout``, which treats it as transient and risks a duplicate.

Once a part of a multi-part job fails for good, no further part is sent; the failure is
reported when the parts still in flight have answered, and its reason lists the parts that
were accepted (``parts accepted: 1=<id>``), because those may still reach the handset and
their receipts are still reported for the job.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable
from functools import partial

from smppgw.engine.context import CarrierContext, CarrierPart
from smppgw.engine.job import SendJob
from smppgw.engine.lanes import Lanes
from smppgw.engine.matching import PartRef, ReceiptMatcher
from smppgw.engine.pause import ThrottlePause
from smppgw.engine.policy import Action, ErrorPolicy
from smppgw.engine.tasks import Background
from smppgw.engine.throttle import Throttle
from smppgw.ops.logs import get_logger
from smppgw.smpp.constants import Status
from smppgw.smpp.receipt import normalize_message_id
from smppgw.smpp.session import NoResponse, Result

log = get_logger("smppgw.carrier")


class Results(CarrierPart):
    """Classifies submit_sm answers, schedules retries and reports each job's outcome once."""

    def __init__(
        self,
        ctx: CarrierContext,
        *,
        lanes: Lanes,
        pause: ThrottlePause,
        throttle: Throttle,
        matcher: ReceiptMatcher,
        background: Background,
        active: dict[str, SendJob],
        wake: Callable[[], None],
    ) -> None:
        super().__init__(ctx)
        self.policy = ErrorPolicy(dict(ctx.config.error_policy))
        self.lanes = lanes
        self.pause = pause
        self.throttle = throttle
        self.matcher = matcher
        self.background = background
        self.active = active
        self._wake = wake
        #: Jobs waiting for a retry timer.
        self.retrying = 0

    # ------------------------------------------------------------------ answers
    def on_result(
        self,
        job: SendJob,
        part: int,
        epoch: int,
        probe: bool,
        sent: float,
        fut: asyncio.Future[Result],
    ) -> None:
        """The answer (or its absence) to one part's submit_sm."""
        result = fut.result()
        job.inflight -= 1
        self.pause.answered(probe)
        n = job.parts
        where = f"part {part + 1}/{n}" if n > 1 else "submit_sm"
        c = self.counters
        if isinstance(result, NoResponse):
            c.submit_sm_unknown += 1
            self.observer.submit_timeout(self.name)
            if self.config.resend_on_timeout and result.resendable:
                self._retry(job, part, f"{where}: no response ({result.reason}); resending")
            else:
                # Also when the response said ESME_ROK but was unusable (a message_id over
                # 64 octets, an unreadable body): the SMSC took it, so it is never resent,
                # and it is not reported submitted either, because its receipts could never
                # be matched to an id we cannot keep. unknown_outcome tells the publisher
                # the truth: it may or may not reach the handset.
                self.fail(
                    job,
                    "failed",
                    "unknown_outcome",
                    f"{where}: no usable submit_sm_resp ({result.reason}); "
                    "the SMSC may have accepted it",
                )
        elif result.status == Status.ESME_ROK:
            self.observer.submit_response(self.name, 0, time.monotonic() - sent)
            c.submit_sm_accepted += 1
            self.pause.accepted(probe)
            self._accepted(job, part, str(getattr(result, "message_id", "")))
        else:
            self.observer.submit_response(self.name, result.status, time.monotonic() - sent)
            action = self.policy.classify(result.status)
            code = self.policy.describe(result.status)
            if action is Action.THROTTLE:
                c.submit_sm_throttled += 1
                self._throttled(job, part, epoch)
            elif action is Action.PERMANENT:
                c.submit_sm_rejected += 1
                self.fail(job, "rejected", code, f"{where}: {code}")
            else:
                c.submit_sm_transient += 1
                self._retry(job, part, f"{where}: {code}")
        self.settle(job)
        self._wake()

    def _accepted(self, job: SendJob, part: int, message_id: str) -> None:
        job.ids[part] = message_id
        job.accepted += 1
        if message_id:
            try:
                key = normalize_message_id(message_id, self.config.submit_id_base)
            except ValueError:
                key = normalize_message_id(message_id)
            job.keys[part] = key
            self.matcher.add(key, PartRef(job.job_id, part, job.parts, time.monotonic()))

    def _throttled(self, job: SendJob, part: int, epoch: int) -> None:
        if job.failure is None:
            bisect.insort(job.todo, part)
            self.lanes.requeue_front(job)
            self.observer.retry(self.name)
        now = time.monotonic()
        lone = not self.pause.streak
        pause = self.pause.throttled(epoch, now, self.throttle.window_frees(now))
        if pause is None:
            return  # sent before the pause we are already in: no extra back-off
        if lone:
            # We kept to tps per second, so the SMSC's clock lagged ours by more than
            # the guard: widen it so that this jitter does not throttle us again.
            self.throttle.widen_guard()
        self.counters.throttle_pauses += 1
        self.observer.throttle_backoff(self.name, pause)
        log.warning(
            "SMSC throttling; pausing",
            carrier=self.name,
            seconds=round(pause, 4),
            guard=self.throttle.guard,
        )

    # ------------------------------------------------------------------ retries
    def _retry(self, job: SendJob, part: int, why: str) -> None:
        if job.failure is not None:
            return
        bisect.insort(job.todo, part)
        if job.retry is not None:
            self.observer.retry(self.name)
            return  # one back-off covers every part that failed in the same round
        job.attempt += 1
        self.counters.retries += 1
        if job.attempt > self.config.max_retries:
            self.fail(
                job, "failed", "retries_exhausted", f"{why}; gave up after {job.attempt} attempts"
            )
            return
        self.observer.retry(self.name)
        self.lanes.remove(job)
        delay = self.config.retry_backoff * (2.0 ** (job.attempt - 1))
        self.retrying += 1
        job.retry = asyncio.get_running_loop().call_later(delay, self._retry_due, job)

    def _retry_due(self, job: SendJob) -> None:
        job.retry = None
        self.retrying -= 1
        self.lanes.requeue_front(job)

    def cancel_retry(self, job: SendJob) -> None:
        if job.retry is not None:
            job.retry.cancel()
            job.retry = None
            self.retrying -= 1

    # ------------------------------------------------------------------ outcomes
    def fail(self, job: SendJob, status: str, code: str, reason: str) -> None:
        """The job ends in ``status`` (reported once nothing of it is in flight)."""
        if job.failure is None:
            job.failure = (status, code, reason)
        self.lanes.remove(job)
        self.cancel_retry(job)

    def settle(self, job: SendJob) -> None:
        """Report the job's outcome once it is known and nothing of it is in flight."""
        if job.reported:
            return
        if job.failure is not None:
            if job.inflight:
                return
            status, code, reason = job.failure
            accepted = [f"{i + 1}={mid}" for i, mid in enumerate(job.ids) if mid is not None]
            if accepted:
                reason = f"{reason}; parts accepted: {', '.join(accepted)}"
            job.message.accepted = job.accepted
            c = self.counters
            if status == "rejected":
                c.jobs_rejected += 1
            elif status == "expired":
                c.jobs_expired += 1
            else:
                c.jobs_failed += 1
            self._report(
                job, partial(self.events.finished, self.name, job.message, status, code, reason)
            )
        elif job.pdus is not None and job.accepted == len(job.pdus):
            self.counters.jobs_submitted += 1
            ids = [mid or "" for mid in job.ids]
            self._report(job, partial(self.events.submitted, self.name, job.message, ids, job.keys))

    def _report(self, job: SendJob, call: Callable[[], Awaitable[None]]) -> None:
        job.reported = True
        self.background.spawn(self._emit(job, call))

    async def _emit(self, job: SendJob, call: Callable[[], Awaitable[None]]) -> None:
        await self.background.durably(call, job.job_id)
        job.settle()
        if self.active.get(job.job_id) is job:
            del self.active[job.job_id]
