"""What the run proved, from three independent witnesses, and the one-screen summary.

The status events say what the gateway *claims*; the simulators' ``/submits`` and
``/stats`` say what actually reached the SMSCs and when; the gateway's ``/metrics`` say what
it counted. The checks compare them: the OTP's place in the SMSC's arrival order (not in
our event order) shows it overtook the burst, the SMSC's arrival times show the contracted
TPS was never exceeded, and receipts sent by the SMSCs are compared with receipts the
gateway matched.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from smppgw.demo.scenario import DemoJob, Scenario
from smppgw.demo.watch import Record, count_finals


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(slots=True)
class Evidence:
    """Everything gathered after the jobs settled."""

    record: Record
    submits: dict[str, list[dict[str, Any]]]  # carrier → GET /submits items, in arrival order
    stats: dict[str, dict[str, Any]]  # carrier → GET /stats
    metrics: dict[str, float]  # sample name → sum over labels
    tps: dict[str, float | None]  # carrier → the simulator account's TPS
    mo_sent_at: float | None = None
    mo_topic: str = ""
    notes: list[str] = field(default_factory=list)


def sum_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {sample name: sum over all label sets}."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


def max_in_window(times: Sequence[float], span: float = 1.0) -> int:
    """The most events in any half-open window of ``span`` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - span:
            start += 1
        best = max(best, end - start + 1)
    return best


def job_outcome(record: Record, job: DemoJob) -> tuple[bool, str]:
    final = record.final(job.id)
    if final is None:
        events = record.statuses.get(job.id, ())
        last = events[-1].body.get("status") if events else "no event"
        return False, f"not final ({last})"
    status = str(final.body.get("status"))
    ok = status in job.expected
    error = final.body.get("error") or {}
    if job.error_code is not None:
        ok = ok and error.get("code") == job.error_code
    detail = status
    if error:
        detail += f" ({error.get('code')})"
    parts = int(final.body.get("parts") or 0)
    if parts > 1:
        detail += f", {parts} parts"
    return ok, detail


def _submit_positions(scenario: Scenario, ev: Evidence) -> dict[str, tuple[int, float]]:
    """job id → (1-based arrival position at its SMSC, SMSC arrival wall time)."""
    by_message: dict[tuple[str, str], str] = {}
    for job in scenario.all_jobs:
        seen = ev.record.first(job.id, "submitted")
        if seen is not None and job.carrier:
            for message_id in seen.body.get("message_ids") or ():
                by_message[(job.carrier, str(message_id))] = job.id
    positions: dict[str, tuple[int, float]] = {}
    for carrier, items in ev.submits.items():
        for position, item in enumerate(items, start=1):
            job_id = by_message.get((carrier, str(item.get("message_id"))))
            if job_id is not None and job_id not in positions:
                positions[job_id] = (position, float(item.get("time", 0.0)))
    return positions


def checks(scenario: Scenario, ev: Evidence) -> list[Check]:
    record = ev.record
    result: list[Check] = []
    for job in scenario.showcase:
        ok, detail = job_outcome(record, job)
        result.append(Check(job.short, ok, detail))
    ok, detail = job_outcome(record, scenario.otp)
    result.append(Check(scenario.otp.short, ok, detail))
    result.append(_optout_check(scenario, ev))

    burst_ids = [job.id for job in scenario.burst]
    counts = count_finals(record, burst_ids)
    burst_ok = all(job_outcome(record, job)[0] for job in scenario.burst)
    shown = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()) if name != "submitted")
    result.append(Check(f"{len(burst_ids)} reminders (low)", burst_ok, shown or "no final status"))

    result.append(_priority_check(scenario, ev))
    result.append(_throttle_check(scenario.burst_carrier, ev))
    result.append(_receipt_check(scenario, ev))
    result.append(_mo_check(ev))
    result.append(_reply_check(scenario, ev))
    return result


def _priority_check(scenario: Scenario, ev: Evidence) -> Check:
    positions = _submit_positions(scenario, ev)
    otp = scenario.otp
    name = "OTP overtook"
    if otp.id not in positions:
        return Check(name, False, "the OTP never reached the SMSC")
    otp_position, otp_at = positions[otp.id]
    before = [job.id for job in scenario.burst[: scenario.otp_after]]
    overtaken = sum(1 for j in before if j in positions and positions[j][0] > otp_position)
    published = ev.record.published
    otp_wait = otp_at - published.get(otp.id, otp_at)
    waits = [
        positions[j.id][1] - published[j.id]
        for j in scenario.burst
        if j.id in positions and j.id in published
    ]
    total = len(ev.submits.get(scenario.burst_carrier, []))
    detail = (
        f"sent after {len(before)} reminders, #{otp_position} of {total} at the SMSC "
        f"(overtook {overtaken}) in {otp_wait * 1000:.0f} ms"
    )
    if waits:
        detail += f"; reminders: median {statistics.median(waits):.1f} s, max {max(waits):.1f} s"
    return Check(name, overtaken > 0, detail)


def _throttle_check(carrier: str, ev: Evidence) -> Check:
    items = ev.submits.get(carrier, [])
    tps = ev.tps.get(carrier)
    times = [float(item.get("time", 0.0)) for item in items]
    peak = max_in_window(times)
    throttled = int(ev.stats.get(carrier, {}).get("submits_throttled", 0))
    span = max(times) - min(times) if times else 0.0
    limit = "no limit" if tps is None else f"{tps:g}"
    detail = (
        f"{len(items)} submit_sm in {span:.1f} s, at most {peak} in any 1 s "
        f"(limit {limit}), {throttled} ESME_RTHROTTLED"
    )
    ok = throttled == 0 and (tps is None or peak <= tps)
    return Check(f"{carrier} TPS", ok, detail)


def _receipt_check(scenario: Scenario, ev: Evidence) -> Check:
    sent = sum(int(s.get("receipts_sent", 0)) for s in ev.stats.values())
    received = int(ev.metrics.get("smppgw_receipts_total", 0))
    unmatched = int(ev.metrics.get("smppgw_receipts_unmatched_total", 0))
    expected = 0
    for job in scenario.all_jobs:
        final = ev.record.final(job.id)
        if final is not None and final.body.get("status") in ("delivered", "undelivered"):
            expected += int(final.body.get("parts") or 0)
    detail = f"{received} of {sent} sent by the SMSCs, for {expected} parts; {unmatched} unmatched"
    return Check("receipts", unmatched == 0 and received >= expected > 0, detail)


def _optout_check(scenario: Scenario, ev: Evidence) -> Check:
    """The customer's HỦY recorded (the consent event), then a promotion to them refused."""
    from smppgw.demo.scenario import OPTOUT_CUSTOMER, OPTOUT_TEXT

    name = scenario.optout.short
    event = next((s for s in ev.record.consent if s.body.get("number") == OPTOUT_CUSTOMER), None)
    if event is None:
        return Check(name, False, f"no opt-out recorded for {OPTOUT_CUSTOMER}")
    ok, detail = job_outcome(ev.record, scenario.optout)
    keyword = event.body.get("keyword")
    return Check(
        name,
        ok and event.body.get("action") == "opt_out",
        f"{OPTOUT_TEXT!r} from {OPTOUT_CUSTOMER} = opt_out ({keyword}); a promotion to "
        f"them: {detail}",
    )


def _mo_check(ev: Evidence) -> Check:
    from smppgw.demo.scenario import COD_CUSTOMER, COD_REPLY

    name = "MO reply"
    for seen in ev.record.inbound:
        body = seen.body
        if body.get("from") == COD_CUSTOMER and body.get("text") == COD_REPLY:
            latency = (
                "" if ev.mo_sent_at is None else f", {(seen.wall - ev.mo_sent_at) * 1000:.0f} ms"
            )
            return Check(
                name,
                True,
                f"{body.get('text')!r} from {COD_CUSTOMER} on {seen.topic}{latency}: "
                "COD order #2048 confirmed",
            )
    if ev.mo_sent_at is None:
        return Check(name, False, "never sent (the COD request was not delivered)")
    return Check(name, False, "sent to the simulator but not seen on the inbound topic")


def _reply_check(scenario: Scenario, ev: Evidence) -> Check:
    """The COD answer tied to the COD job: ``in_reply_to`` on the inbound event, and the
    same event on the job's reply topic."""
    name = "COD reply tied"
    job_id = scenario.cod.id
    tied = [s for s in ev.record.inbound if s.body.get("in_reply_to") == job_id]
    replies = [s for s in ev.record.replies if s.topic.endswith("/" + job_id)]
    if tied and replies:
        return Check(name, True, f"in_reply_to {job_id}, also on {replies[0].topic} (expect_reply)")
    if ev.mo_sent_at is None:
        return Check(name, False, "no reply was sent")
    return Check(
        name,
        False,
        f"in_reply_to {'ok' if tied else 'missing'}; reply topic "
        f"{'ok' if replies else 'got nothing'}",
    )


def summary(
    scenario: Scenario,
    ev: Evidence,
    results: Iterable[Check],
    *,
    next_steps: Sequence[str],
) -> list[str]:
    results = list(results)
    jobs = len(scenario.all_jobs)
    lines = [
        "",
        "─" * 78,
        f"summary: {jobs} jobs sent ({len(scenario.showcase)} showcase, 1 OTP, "
        f"1 promotion after an opt-out, {len(scenario.burst)} bulk reminders)",
    ]
    for check in results:
        mark = "ok  " if check.ok else "FAIL"
        lines.append(f"  {mark} {check.name + ':':<22} {check.detail}")
    counts = [f"{carrier} {stat.get('submits_accepted', 0)}" for carrier, stat in ev.stats.items()]
    lines.append("       submit_sm per SMSC (GET /stats): " + ", ".join(counts))
    lines.extend(f"  note: {note}" for note in ev.notes)
    failed = [c.name for c in results if not c.ok]
    if failed:
        lines.append(f"RESULT: FAILED ({len(failed)} check(s): {', '.join(failed)})")
    else:
        lines.append("RESULT: OK, every job reached its expected final status")
    lines.append("next:")
    lines.extend(f"  {step}" for step in next_steps)
    return lines
