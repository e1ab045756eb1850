"""``smppgw bench e2e --peer kannel``: smppgw and Kannel on the same workload, side by side.

The workload is the throughput scenario's: ``jobs`` messages of one GSM part, receipts on,
one unthrottled SMSC account on ``smppgw sim``, two binds of window 100. smppgw takes them
over MQTT and publishes two events per job; Kannel takes them over HTTP (smsbox's
``sendsms``) and reports the SMSC's ack and the final state of each to a ``dlr-url``. The
runs alternate (smppgw, Kannel, smppgw, Kannel, ...) so a change in the machine's other
load hits both sides alike, and each side's figure is the median of its runs.

Kannel's throughput is messages whose final report said delivered, over the wall time
from the first sendsms request to the last final report less the SMSC's receipt delay
(smppgw's likewise: jobs delivered over first publish to last event less the delay; the
delay is the handset network's time, the same on both sides, and would otherwise weigh
more on the faster side's shorter run); its CPU per message is
bearerbox's + smsbox's CPU time over the measured phase, divided by the messages. The
injector's and the DLR sink's CPU are reported beside it, as the MQTT publisher's and
collector's are beside smppgw's.

Then half load (issue 13 asks for the CPU ratio "flat out and at half load"): both sides
fed at one fixed rate, half the lower of the two flat-out medians just measured (or
``--half-rate``), for ``--half-seconds``, interleaved again. Half of the *lower* rate, so
neither side is near its ceiling and the comparison is CPU per job at equal work, not a
race. smppgw runs the latency scenario at that rate (its paced publisher, its publish →
submit_sm); Kannel gets the same clock (:func:`smppgw.bench.load.pace`) in its HTTP
injector, and its sendsms → submit_sm comes from the simulator's arrival times (the
injector's due time to the first submit_sm carrying the job's destination). Each side's
achieved rate is reported; one more than 5 % off the target is flagged.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from smppgw.bench.kannel import (
    KannelBinaries,
    KannelStack,
    delivered_count,
    kannel_stack,
    submit_arrivals,
)
from smppgw.bench.scenarios import (
    Check,
    CpuMeter,
    Options,
    Progress,
    ScenarioResult,
    Timeline,
    achieved_rate,
    latency,
    latency_figures,
    system_cpu_us_per_job,
    throughput,
)
from smppgw.bench.stats import Latency

__all__ = ["TARGET_CPU_RATIO", "TARGET_RATE_RATIO", "compare", "format_side_by_side"]

#: Issue #13's targets, as ratios taken in one run.
TARGET_RATE_RATIO = 2.0
TARGET_CPU_RATIO = 0.25
#: How far a half-load run's achieved rate may be from the target before it is flagged.
RATE_TOLERANCE = 0.05
#: Seconds without a new final report, after the last injection, before a run gives up
#: on the reports still missing (and says so).
STALL_SECONDS = 20.0


class KannelTicker:
    """Progress line of a Kannel run: counts, rate, bearerbox's + smsbox's CPU use."""

    def __init__(self, progress: Progress, name: str, k: KannelStack, total: int) -> None:
        self.progress = progress
        self.name = name
        self.k = k
        self.total = total
        self.started = time.monotonic()
        self._prev = (self.started, 0, self.k.cpu())

    def __call__(self) -> None:
        now, cpu = time.monotonic(), self.k.cpu()
        done = int(self.k.sink.finals.value)
        at, prev_done, prev_cpu = self._prev
        wall = now - at
        rate = (done - prev_done) / wall if wall > 0 else 0.0
        share = (cpu - prev_cpu) / wall * 100 if wall > 0 else 0.0
        self._prev = (now, done, cpu)
        self.progress.show(
            f"[{self.name}] {now - self.started:5.1f}s  "
            f"sent {int(self.k.injector.sent.value):,}/{self.total:,}  "
            f"acked {int(self.k.sink.acks.value):,}  final {done:,} ({rate:,.0f}/s)  "
            f"bearerbox+smsbox cpu {share:.0f}%"
        )


def _wait_reports(k: KannelStack, n: int, tick: Callable[[], None], timeout: float) -> None:
    """Until ``n`` final reports arrived, or none came for ``STALL_SECONDS``."""
    deadline = time.monotonic() + timeout
    last, last_at = -1, time.monotonic()
    while (done := int(k.sink.finals.value)) < n:
        now = time.monotonic()
        if done != last:
            last, last_at = done, now
        elif now - last_at > STALL_SECONDS or now > deadline:
            return
        k.check()
        tick()
        time.sleep(0.5)


def kannel_run(
    options: Options, progress: Progress, binaries: KannelBinaries, rate: float | None = None
) -> ScenarioResult:
    """One Kannel run on a fresh stack: ``options.jobs`` messages flat out, or (``rate``)
    ``options.half_seconds`` of messages injected at ``rate`` a second, with each one's
    sendsms → submit_sm at the simulator."""
    result = ScenarioResult("kannel" if rate is None else "kannel @ half load")
    n = options.jobs if rate is None else max(1, int(rate * options.half_seconds))
    name = "kannel" if rate is None else f"kannel @ {rate:,.0f}/s"
    with kannel_stack(
        binaries,
        options.workdir,
        keep=options.keep,
        receipt_delay=options.receipt_delay,
        spool_base=options.kannel_spool,
    ) as k:
        warm = max(100, min(2000, n // 10))
        tick = KannelTicker(progress, f"{name} warm-up", k, warm)
        k.injector.burst(1_000_000_000 - warm - 1, warm, tick=tick)
        _wait_reports(k, warm, tick, 120)
        k.sink.reset()
        k.injector.sent.value = 0
        since = k.sim.stats()["submits_accepted"]
        meter = CpuMeter(k.children())
        tick = KannelTicker(progress, name, k, n)
        with Timeline(lambda: int(k.sink.finals.value), k.cpu) as timeline:
            meter.start()
            if rate is None:
                injected = k.injector.burst(0, n, tick=tick)
            else:
                injected = k.injector.paced(0, n, rate, tick=tick)
            _wait_reports(k, n, tick, 60 + n / 200)
            meter.stop()
        reports = k.sink.result()
        if rate is not None:
            progress.show(f"[{name}] reading the simulator's submits")
            arrived = submit_arrivals(k.sim, since, n)
    times = injected.times
    start = min(times)
    ends = [t for i, (_, t) in reports.final.items() if i < n]
    elapsed = (max(ends) - start) if ends else float("nan")
    delivered = delivered_count(reports.final, n)
    kannel_seconds = meter.seconds("bearerbox") + meter.seconds("smsbox")
    load_seconds = meter.seconds("injector") + meter.seconds("dlr sink")
    result.figures.update(
        jobs=n,
        seconds=round(elapsed, 3),
        messages_per_second=achieved_rate(
            delivered, start, max(ends, default=None), options.receipt_delay
        ),
        injection_seconds=round(max(times) - start, 3),
        delivered=delivered,
        acked=len(reports.acked),
        sendsms_resent=injected.resent,
        report_types=reports.counts,
        kannel_cpu_us_per_message=round(kannel_seconds / n * 1e6, 1),
        kannel_cpu_us_by_box={
            box: round(meter.seconds(box) / n * 1e6, 1) for box in ("bearerbox", "smsbox")
        },
        load_cpu_us_per_message=round(load_seconds / n * 1e6, 1),
        cores_used=meter.shares(),
    )
    if rate is not None:
        to_smsc = Latency.of(arrived[i] - times[i] for i in arrived)
        result.figures.update(rate=round(rate, 1), sendsms_to_submit_sm_ms=latency_figures(to_smsc))
        if to_smsc.count != n:
            result.notes.append(f"{n - to_smsc.count} submits missing at the simulator")
    if injected.errors:
        result.notes.append(f"sendsms refused some jobs: {'; '.join(injected.errors)}")
    if injected.resent:
        result.notes.append(
            f"{injected.resent} sendsms requests sent again: smsbox dropped the connection "
            "before answering"
        )
    if delivered != n:
        result.notes.append(f"only {delivered} of {n} final reports said delivered")
    if reports.malformed:
        result.notes.append(f"{reports.malformed} malformed requests at the DLR sink")
    result.series.update(start=start, timeline=timeline.points)
    return result


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else float("nan")


def compare(
    options: Options, progress: Progress, binaries: KannelBinaries, runs: int
) -> ScenarioResult:
    """``runs`` interleaved runs of each side; medians, ratios and the targets."""
    ours, theirs = _interleaved(
        progress,
        runs,
        "",
        lambda: throughput(options, progress),
        lambda: kannel_run(options, progress, binaries),
    )
    for r in ours:  # the receipt delay is the handset network's time, not the gateway's
        busy = r.figures["seconds"] - options.receipt_delay
        r.figures["jobs_per_second"] = round(r.figures["delivered"] / busy, 1)
    rate = _median([r.figures["jobs_per_second"] for r in ours])
    cpu = _median([system_cpu_us_per_job(r.figures) for r in ours])
    peer_rate = _median([r.figures["messages_per_second"] for r in theirs])
    peer_cpu = _median([r.figures["kannel_cpu_us_per_message"] for r in theirs])
    rate_ratio = rate / peer_rate if peer_rate else float("nan")
    cpu_ratio = cpu / peer_cpu if peer_cpu else float("nan")
    result = ScenarioResult("vs kannel")
    result.figures.update(
        peer=f"Kannel {binaries.version()} (bearerbox + smsbox)",
        jobs=options.jobs,
        runs=runs,
        receipt_delay_s=options.receipt_delay,
        kannel_spool=str(options.kannel_spool or "the run's directory"),
        smppgw_jobs_per_second=rate,
        kannel_messages_per_second=peer_rate,
        throughput_ratio=round(rate_ratio, 2),
        smppgw_cpu_us_per_job=cpu,
        kannel_cpu_us_per_message=peer_cpu,
        cpu_ratio=round(cpu_ratio, 2),
        smppgw_runs_jobs_per_second=[r.figures["jobs_per_second"] for r in ours],
        kannel_runs_messages_per_second=[r.figures["messages_per_second"] for r in theirs],
        smppgw_runs_cpu_us=[system_cpu_us_per_job(r.figures) for r in ours],
        kannel_runs_cpu_us=[r.figures["kannel_cpu_us_per_message"] for r in theirs],
        smppgw_delivered=[r.figures["delivered"] for r in ours],
        kannel_delivered=[r.figures["delivered"] for r in theirs],
        kannel_cpu_us_by_box=theirs[len(theirs) // 2].figures["kannel_cpu_us_by_box"],
        **_shared_store(options, ours),
        smppgw_load_cpu_us_per_job=_median([r.figures["load_cpu_us_per_job"] for r in ours]),
        kannel_load_cpu_us_per_message=_median(
            [r.figures["load_cpu_us_per_message"] for r in theirs]
        ),
        other_processes_cores=[
            r.figures["cores_used"]["other processes"]
            for pair in zip(ours, theirs, strict=True)
            for r in pair
        ],
    )
    result.checks.append(
        Check("jobs/s ÷ Kannel's (same run)", rate_ratio, TARGET_RATE_RATIO, "×", at_most=False)
    )
    result.checks.append(
        Check("CPU per job ÷ Kannel's (same run)", cpu_ratio, TARGET_CPU_RATIO, "×", at_most=True)
    )
    half_rate = options.half_rate or min(rate, peer_rate) / 2
    if math.isnan(half_rate) or half_rate <= 0:
        raise RuntimeError(f"no half-load rate from flat-out rates {rate} and {peer_rate}")
    ours_half, theirs_half = half_load(options, progress, binaries, runs, half_rate)
    result.figures["half_load"] = _half_figures(options, half_rate, ours_half, theirs_half)
    half_cpu_ratio = result.figures["half_load"]["cpu_ratio"]
    result.checks.append(
        Check("CPU per job ÷ Kannel's at half load", half_cpu_ratio, TARGET_CPU_RATIO, "×", True)
    )
    for side in (*ours, *theirs, *ours_half, *theirs_half):
        result.notes.extend(f"{side.name}: {note}" for note in side.notes)
    for side_name, achieved in (
        ("smppgw", result.figures["half_load"]["smppgw_runs_rate"]),
        ("kannel", result.figures["half_load"]["kannel_runs_rate"]),
    ):
        off = [a for a in achieved if not abs(a - half_rate) <= RATE_TOLERANCE * half_rate]
        if off:
            result.notes.append(
                f"half load: {side_name} did not keep to {half_rate:,.0f}/s "
                f"(achieved {', '.join(f'{a:,.0f}' for a in off)}/s): its figures are not at "
                "the target rate"
            )
    result.series.update(
        smppgw=[r.series for r in ours], kannel=[r.series for r in theirs], rates=(rate, peer_rate)
    )
    return result


def _shared_store(options: Options, ours: list[ScenarioResult]) -> dict[str, Any]:
    """With ``--backend postgres``: what smppgw's CPU a job is made of (medians), since it
    counts the shared PostgreSQL and Redis beside the gateways."""
    if options.backend != "postgres":
        return {}
    return {
        "smppgw_backend": f"postgres, {options.gateways} gateway(s)",
        "smppgw_cpu_us_by_process": {
            "gateways": _median([r.figures["gateway_cpu_us_per_job"] for r in ours]),
            "postgres": _median([r.figures["database_cpu_us_per_job"] for r in ours]),
            "redis": _median([r.figures["redis_cpu_us_per_job"] for r in ours]),
        },
    }


def _middle(runs: list[ScenarioResult], key: str) -> dict[str, Any]:
    """The figures of the run whose ``key`` is the median (the lower middle of an even
    count)."""
    ordered = sorted(runs, key=lambda r: float(r.figures[key]))
    return ordered[(len(ordered) - 1) // 2].figures


def half_load(
    options: Options, progress: Progress, binaries: KannelBinaries, runs: int, rate: float
) -> tuple[list[ScenarioResult], list[ScenarioResult]]:
    """``runs`` interleaved runs of each side fed at ``rate`` for ``options.half_seconds``:
    smppgw through the latency scenario (its paced publisher, its publish → submit_sm),
    Kannel through the paced injector."""
    paced = dataclasses.replace(options, rate=rate, latency_seconds=options.half_seconds)
    return _interleaved(
        progress,
        runs,
        f"half load {rate:,.0f}/s, ",
        lambda: latency(paced, progress),
        lambda: kannel_run(options, progress, binaries, rate),
    )


def _interleaved(
    progress: Progress,
    runs: int,
    label: str,
    ours: Callable[[], ScenarioResult],
    theirs: Callable[[], ScenarioResult],
) -> tuple[list[ScenarioResult], list[ScenarioResult]]:
    """``runs`` runs of each side, alternating (smppgw first), so that a change in the
    machine's load over the minutes lands on both columns alike."""
    our_runs: list[ScenarioResult] = []
    their_runs: list[ScenarioResult] = []
    for k in range(runs):
        progress.line(f"   {label}run {k + 1}/{runs}: smppgw")
        our_runs.append(ours())
        progress.line(f"   {label}run {k + 1}/{runs}: kannel")
        their_runs.append(theirs())
    return our_runs, their_runs


def _half_figures(
    options: Options, rate: float, ours: list[ScenarioResult], theirs: list[ScenarioResult]
) -> dict[str, Any]:
    """The half-load block: medians of each side, the CPU ratio, every run's figures."""
    cpu = _median([system_cpu_us_per_job(r.figures) for r in ours])
    peer_cpu = _median([r.figures["kannel_cpu_us_per_message"] for r in theirs])
    return {
        **_shared_store(options, ours),
        "rate": round(rate, 1),
        "rate_from": "--half-rate" if options.half_rate else "half the lower flat-out rate",
        "seconds": options.half_seconds,
        "smppgw_rate": _median([r.figures["achieved_rate"] for r in ours]),
        "kannel_rate": _median([r.figures["messages_per_second"] for r in theirs]),
        "smppgw_cpu_us_per_job": cpu,
        "kannel_cpu_us_per_message": peer_cpu,
        "cpu_ratio": round(cpu / peer_cpu, 2) if peer_cpu else float("nan"),
        "smppgw_p99_publish_to_submit_sm_ms": _median(
            [r.figures["publish_to_submit_sm_ms"]["p99"] for r in ours]
        ),
        "kannel_p99_sendsms_to_submit_sm_ms": _median(
            [r.figures["sendsms_to_submit_sm_ms"]["p99"] for r in theirs]
        ),
        # Where the CPU goes, from each side's run of median CPU.
        "smppgw_cpu_us_by_thread": _middle(ours, "gateway_cpu_us_per_job")[
            "gateway_cpu_us_per_job_by_thread"
        ],
        "smppgw_store": _middle(ours, "gateway_cpu_us_per_job")["store"],
        "kannel_cpu_us_by_box": _middle(theirs, "kannel_cpu_us_per_message")[
            "kannel_cpu_us_by_box"
        ],
        "smppgw_runs_rate": [r.figures["achieved_rate"] for r in ours],
        "kannel_runs_rate": [r.figures["messages_per_second"] for r in theirs],
        "smppgw_runs_cpu_us": [r.figures["gateway_cpu_us_per_job"] for r in ours],
        "kannel_runs_cpu_us": [r.figures["kannel_cpu_us_per_message"] for r in theirs],
        "smppgw_runs_p99_ms": [r.figures["publish_to_submit_sm_ms"]["p99"] for r in ours],
        "kannel_runs_p99_ms": [r.figures["sendsms_to_submit_sm_ms"]["p99"] for r in theirs],
        "smppgw_jobs": [r.figures["jobs"] for r in ours],
        "smppgw_delivered": [r.figures["delivered"] for r in ours],
        "kannel_jobs": [r.figures["jobs"] for r in theirs],
        "kannel_delivered": [r.figures["delivered"] for r in theirs],
        "other_processes_cores": [
            r.figures["cores_used"]["other processes"]
            for pair in zip(ours, theirs, strict=True)
            for r in pair
        ],
    }


def format_side_by_side(result: ScenarioResult) -> str:
    """The comparison as the two-column table docs/performance.md quotes."""
    f: dict[str, Any] = result.figures
    rows = [
        ("", "smppgw", "Kannel", "ratio", "target"),
        (
            "jobs/s with receipts",
            f"{f['smppgw_jobs_per_second']:,.0f}",
            f"{f['kannel_messages_per_second']:,.0f}",
            f"{f['throughput_ratio']:.2f}×",
            f">= {TARGET_RATE_RATIO:g}×",
        ),
        (
            "CPU per job (µs)",
            f"{f['smppgw_cpu_us_per_job']:,.0f}",
            f"{f['kannel_cpu_us_per_message']:,.0f}",
            f"{f['cpu_ratio']:.2f}×",
            f"<= {TARGET_CPU_RATIO:g}×",
        ),
        (
            "load generators' CPU per job (µs)",
            f"{f['smppgw_load_cpu_us_per_job']:,.0f}",
            f"{f['kannel_load_cpu_us_per_message']:,.0f}",
            "",
            "",
        ),
    ]
    h: dict[str, Any] | None = f.get("half_load")
    if h is not None:
        rows += [
            (f"half load: fed at {h['rate']:,.0f}/s for {h['seconds']:g} s", "", "", "", ""),
            (
                "  achieved jobs/s",
                f"{h['smppgw_rate']:,.0f}",
                f"{h['kannel_rate']:,.0f}",
                "",
                f"≈ {h['rate']:,.0f}",
            ),
            (
                "  CPU per job (µs)",
                f"{h['smppgw_cpu_us_per_job']:,.0f}",
                f"{h['kannel_cpu_us_per_message']:,.0f}",
                f"{h['cpu_ratio']:.2f}×",
                f"<= {TARGET_CPU_RATIO:g}×",
            ),
            (
                "  p99 in → submit_sm at the SMSC (ms)",
                f"{h['smppgw_p99_publish_to_submit_sm_ms']:,.1f}",
                f"{h['kannel_p99_sendsms_to_submit_sm_ms']:,.1f}",
                "",
                "",
            ),
        ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        f"side by side: smppgw vs {f['peer']}, {f['jobs']:,} jobs, "
        f"median of {f['runs']} interleaved runs each"
    ]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    others = ", ".join(f"{x:.2f}" for x in f["other_processes_cores"])
    lines.append(f"other processes (cores, run by run): {others}")
    by_process = f.get("smppgw_cpu_us_by_process")
    if by_process is not None:
        parts = ", ".join(f"{name} {us:,.0f}" for name, us in by_process.items())
        lines.append(
            f"smppgw on {f['smppgw_backend']}: its CPU per job counts the gateways, "
            f"PostgreSQL and Redis (µs, flat out: {parts})"
        )
    if h is not None:
        others = ", ".join(f"{x:.2f}" for x in h["other_processes_cores"])
        lines.append(f"other processes at half load (cores, run by run): {others}")
        lines.append(
            "half load: smppgw's p99 is publish → submit_sm, Kannel's sendsms → submit_sm; "
            f"rate {h['rate_from']}"
        )
    return "\n".join(lines)
