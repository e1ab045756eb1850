"""Fault-injection suite: sizes for CI by default, the long run with ``SMPPGW_LONG=1``.

Each scenario reads its sizes through :func:`size` so that one code path serves both runs;
tests marked ``slow`` run only in the long run. Every scenario hands its figures to the
``report`` fixture: they are printed, and appended as JSON lines to the file named by
``SMPPGW_RELIABILITY_OUT`` when set (docs/reliability.md is written from those).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

LONG = os.environ.get("SMPPGW_LONG") == "1"
T = TypeVar("T")


def size(ci: T, long: T) -> T:
    """The CI figure, or the long-run figure under ``SMPPGW_LONG=1``."""
    return long if LONG else ci


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    if LONG:
        # Long-run scenarios take minutes each; the suite-wide 120 s limit is for CI sizes.
        for item in items:
            if here in Path(item.path).parents and item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(1800))
        return
    skip = pytest.mark.skip(reason="long run only (SMPPGW_LONG=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """``report(**figures)``: record this scenario's figures (printed and, with
    ``SMPPGW_RELIABILITY_OUT``, appended to that file as one JSON line)."""
    started = time.monotonic()
    entries: list[dict[str, Any]] = []

    def record(**figures: Any) -> None:
        entries.append(figures)

    yield record
    out = os.environ.get("SMPPGW_RELIABILITY_OUT")
    for figures in entries:
        line = {
            "test": request.node.nodeid,
            "long": LONG,
            "seconds": round(time.monotonic() - started, 1),
            **figures,
        }
        print(orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS).decode())
        if out:
            with Path(out).open("ab") as fh:
                fh.write(orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS) + b"\n")
