"""``smppgw bench e2e --plot DIR``: the figures people would rather look at than read.

One PNG per measured thing, from the raw samples the scenarios keep
(:attr:`~smppgw.bench.scenarios.ScenarioResult.series`):

- ``latency-cdf.png``: publish → submit_sm and publish → delivered, as cumulative
  distributions (latency scenario, half of capacity);
- ``throughput.png``: delivered jobs per second and the gateway's CPU over the run
  (throughput scenario), with Kannel's curves beside smppgw's after ``--peer kannel``;
- ``throttle.png``: submit_sm per 100 ms at the SMSC with the tps line (throttle scenario).

matplotlib is optional (``pip install 'smppgw[bench]'``): the gateway does not need it and
the benchmark without ``--plot`` does not import it. Drawing uses matplotlib's object API
on the Agg canvas, no pyplot, so nothing global changes and no display is needed.
"""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smppgw.bench.scenarios import ScenarioResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plotting_available", "write_charts"]

#: Small PNGs (they are committed to docs/img): 8 × 4.5 inches at 90 dpi.
_SIZE = (8.0, 4.5)
_DPI = 90
_OURS = "#1f6fb4"
_PEER = "#d2691e"


def plotting_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _figure(rows: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_SIZE[0], _SIZE[1] * (1 if rows == 1 else 1.4)), dpi=_DPI)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, list(axes)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _cdf(ax: Axes, seconds: Sequence[float], label: str, color: str, style: str = "-") -> None:
    values = sorted(s * 1000.0 for s in seconds)
    if not values:
        return
    n = len(values)
    ax.plot(values, [(i + 1) / n * 100 for i in range(n)], style, color=color, label=label)


def latency_chart(result: ScenarioResult, path: Path) -> Path:
    s = result.series
    fig, (ax,) = _figure()
    _cdf(ax, s["publish_to_submit_sm"], "publish → submit_sm at the SMSC", _OURS)
    _cdf(ax, s["publish_to_delivered"], "publish → delivered event", _OURS, "--")
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("jobs at or below (%)")
    ax.set_ylim(0, 100)
    ax.axhline(99, color="grey", lw=0.8, ls=":")
    ax.text(0.01, 99, "p99", transform=ax.get_yaxis_transform(), va="bottom", color="grey")
    ax.set_title(f"smppgw latency at {s['rate']:,.0f} jobs/s (half of capacity)")
    ax.legend(loc="lower right")
    return _save(fig, path)


#: Rates are taken over a sliding window of this many seconds: the samples come every
#: 0.2 s, and per-sample rates would be mostly the noise of event batching.
_WINDOW = 1.0


def _rates(series: dict[str, Any]) -> tuple[list[float], list[float], list[float]]:
    """Seconds since the first publish, jobs/s and CPU cores over the last second."""
    start = series["start"]
    timeline = series["timeline"]
    times, rates, cores = [], [], []
    j = 0
    for t1, d1, c1 in timeline:
        while j + 1 < len(timeline) and t1 - timeline[j + 1][0] >= _WINDOW:
            j += 1
        t0, d0, c0 = timeline[j]
        if t1 - t0 < _WINDOW / 2:
            continue
        times.append(t1 - start)
        rates.append((d1 - d0) / (t1 - t0))
        cores.append((c1 - c0) / (t1 - t0))
    return times, rates, cores


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose overall rate is the median of its side's (the one the table quotes)."""

    def rate(series: dict[str, Any]) -> float:
        (t0, d0, _), (t1, d1, _) = series["timeline"][0], series["timeline"][-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    ordered = sorted(runs, key=rate)
    target = statistics.median_low([rate(r) for r in ordered])
    return next(r for r in ordered if rate(r) == target)


def throughput_chart(
    ours: dict[str, Any], path: Path, peer: dict[str, Any] | None = None, title: str = ""
) -> Path:
    fig, (top, bottom) = _figure(2)
    sides: list[tuple[str, str, dict[str, Any]]] = [("smppgw", _OURS, ours)]
    if peer is not None:
        sides.append(("Kannel (bearerbox + smsbox)", _PEER, peer))
    for label, color, series in sides:
        times, rates, cores = _rates(series)
        top.plot(times, rates, color=color, label=label)
        bottom.plot(times, cores, color=color, label=label)
    top.set_ylabel(f"delivered per second ({_WINDOW:g} s window)")
    top.set_ylim(bottom=0)
    top.legend(loc="upper left")
    top.set_title(title or "throughput with receipts, flat out")
    bottom.set_ylabel("gateway CPU (cores)")
    bottom.set_xlabel("seconds since the first job")
    bottom.set_ylim(bottom=0)
    return _save(fig, path)


def throttle_chart(result: ScenarioResult, path: Path) -> Path:
    s = result.series
    times: list[float] = s["submit_times"]
    tps: float = s["tps"]
    first = times[0]
    buckets = int(s["seconds"] * 10) + 1
    counts = [0] * buckets
    for t in times:
        k = int((t - first) * 10)
        if k < buckets:
            counts[k] += 1
    fig, (ax,) = _figure()
    edges = [k / 10 for k in range(buckets + 1)]
    ax.stairs(counts, edges, fill=True, color=_OURS, alpha=0.8, label="submit_sm per 100 ms")
    ax.set_ylim(0, max(max(counts), tps / 10) * 1.4)
    ax.axhline(tps / 10, color="#b22222", lw=1.2, label=f"tps {tps:g} = {tps / 10:g} per 100 ms")
    ax.set_xlabel("seconds since the first submit")
    ax.set_ylabel("submit_sm per 100 ms")
    ax.set_title(f"throttled carrier: submit_sm at the SMSC (tps {tps:g})")
    ax.legend(loc="upper right")
    return _save(fig, path)


def write_charts(results: list[ScenarioResult], directory: Path) -> list[Path]:
    """Every chart the results have samples for; the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    by_name = {r.name: r for r in results}
    written: list[Path] = []
    if (r := by_name.get("latency")) is not None and r.series:
        written.append(latency_chart(r, directory / "latency-cdf.png"))
    if (r := by_name.get("vs kannel")) is not None and r.series:
        written.append(
            throughput_chart(
                _median_run(r.series["smppgw"]),
                directory / "throughput-vs-kannel.png",
                _median_run(r.series["kannel"]),
                f"{r.figures['jobs']:,} jobs with receipts, flat out: smppgw and Kannel "
                "(median runs)",
            )
        )
    if (r := by_name.get("throughput")) is not None and r.series:
        written.append(throughput_chart(r.series, directory / "throughput.png"))
    if (r := by_name.get("throttle")) is not None and r.series:
        written.append(throttle_chart(r, directory / "throttle.png"))
    return written
