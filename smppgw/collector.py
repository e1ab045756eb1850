"""The cyclic garbage collector's setting for smppgw's long-running processes.

The gateway's event loop and the store's writer process both handle thousands of
short-lived objects a second (PDUs, MQTT packets, jobs, events, store operations), none of
them in a reference cycle that reference counting would not free; at CPython's default
thresholds (700, 10, 10) the collector took ~15 % of the gateway's CPU per job and ~2.7 %
of the writer's samples flat out (docs/performance.md). Both processes call
:func:`collect_seldom` once start-up is done, so they share one setting.
"""

from __future__ import annotations

import gc

#: Collect the youngest generation every 50,000 net allocations instead of 700.
THRESHOLDS = (50_000, 20, 100)


def collect_seldom() -> None:
    """Collect once, freeze what start-up built (it lives as long as the process, so the
    collector need not walk it again), and collect seldom from here on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
