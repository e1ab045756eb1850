"""``supervised``: the gateway's task group, where one failing task ends alone."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from structlog.testing import capture_logs

from smppgw.aio import RunningLoop, supervised

log = structlog.get_logger("test")


async def test_a_failing_task_is_logged_and_its_siblings_keep_running() -> None:
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def failing() -> None:
        await asyncio.sleep(0.02)
        raise RuntimeError("disk full")

    with capture_logs() as logs:
        async with supervised(log) as spawn:
            sibling = spawn(ticking(), "ticking")
            spawn(failing(), "purge")
            await asyncio.sleep(0.1)
            assert not sibling.done()
            before = ticks
            await asyncio.sleep(0.05)
            assert ticks > before  # still running after the failure
    assert sibling.cancelled()  # leaving the block cancels what is left
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert [e["task"] for e in failed] == ["purge"]
    assert failed[0]["log_level"] == "error"


async def test_leaving_the_block_waits_for_cancelled_tasks_to_finish() -> None:
    cleaned = asyncio.Event()

    async def holding() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # cleanup that takes a moment
            cleaned.set()

    async with supervised(log) as spawn:
        spawn(holding(), "holding")
        await asyncio.sleep(0)
    assert cleaned.is_set()


async def test_running_loop_answers_the_loop_it_first_ran_on() -> None:
    running = RunningLoop()
    assert running() is asyncio.get_running_loop()
    assert running() is running()


def test_running_loop_outside_a_loop_is_asyncio_s_error() -> None:
    with pytest.raises(RuntimeError):
        RunningLoop()()
