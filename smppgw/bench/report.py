"""The benchmark's results as a table (what docs/performance.md quotes) and as JSON."""

from __future__ import annotations

import os
import platform
from typing import Any

from smppgw.bench.scenarios import Check, ScenarioResult
from smppgw.commands.bench_codec import cpu_model

__all__ = ["as_json", "format_results", "machine"]


def cpu_ghz() -> float | None:
    """The first CPU's clock from /proc/cpuinfo (Linux; a VM reports its host's), or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("cpu mhz"):
                    return round(float(line.split(":", 1)[1]) / 1000, 2)
    except (OSError, ValueError):
        pass
    return None


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "ghz": cpu_ghz(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "system": f"{platform.system()} {platform.release()}",
    }


def _value(check: Check) -> str:
    v = check.value
    if v != v:  # NaN
        return "n/a"
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"
    return f"{text} {check.unit}".strip()


def _limit(check: Check) -> str:
    op = "<=" if check.at_most else ">="
    limit = f"{check.limit:,.0f}" if check.limit >= 100 else f"{check.limit:g}"
    return f"{op} {limit} {check.unit}".strip()


def format_results(results: list[ScenarioResult]) -> str:
    """A table of every check, then each scenario's other figures."""
    m = machine()
    clock = f" at {m['ghz']:g} GHz" if m["ghz"] else ""
    lines = [
        f"machine: {m['cpu']}{clock}, {m['cores']} cores, {m['python']}, {m['system']}",
        "",
    ]
    rows = [("scenario", "figure", "measured", "target", "")]
    for result in results:
        for check in result.checks:
            rows.append(
                (
                    result.name,
                    check.name,
                    _value(check),
                    _limit(check),
                    "ok" if check.ok else "MISSED",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for i, row in enumerate(rows):
        cells = [
            row[0].ljust(widths[0]),
            row[1].ljust(widths[1]),
            row[2].rjust(widths[2]),
            row[3].ljust(widths[3]),
            row[4],
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for result in results:
        lines.append("")
        lines.append(f"{result.name} ({result.seconds:.0f} s):")
        for key, value in result.figures.items():
            lines.append(f"  {key}: {_show(value)}")
        for note in result.notes:
            lines.append(f"  NOTE: {note}")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value == value else "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def as_json(results: list[ScenarioResult], options: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": machine(),
        "options": options,
        "scenarios": {
            r.name: {
                "seconds": round(r.seconds, 1),
                "figures": r.figures,
                "checks": [
                    {
                        "name": c.name,
                        "value": c.value,
                        "limit": c.limit,
                        "unit": c.unit,
                        "at_most": c.at_most,
                        "ok": c.ok,
                    }
                    for c in r.checks
                ],
                "notes": r.notes,
            }
            for r in results
        },
        "all_ok": all(c.ok for r in results for c in r.checks),
    }
