"""Small asyncio helpers shared by the gateway's background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set.

    The background loops sleep this way so that a wake-up (new work committed) cuts the
    sleep short instead of waiting for the next poll.
    """
    if timeout <= 0:
        return event.is_set()
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


class RunningLoop:
    """The event loop an object runs on, asked of asyncio once.

    On CPython 3.11 every ``asyncio.get_running_loop()`` (and every ``current_task()`` or
    future made without a loop) is a ``getpid()`` system call: asyncio's check that the
    loop was not inherited through ``fork``. The hot path asked ~10 times a job, ~10 of
    the event loop's ~15 system calls a job (issue 13); an object that creates futures
    per job asks this instead, which asks asyncio the first time it is called (so it
    binds to the loop the object is first used on, and must not outlive it).
    """

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop


#: Starts a coroutine as a supervised task (see :func:`supervised`); returns the task.
Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[None]"]


@contextlib.asynccontextmanager
async def supervised(log: Any) -> AsyncIterator[Spawn]:
    """An ``asyncio.TaskGroup`` for tasks that live as long as the block: leaving the block
    cancels them and waits until they are gone.

    A task that fails is logged (``task_failed``, with its name) and ends alone. A bare
    TaskGroup would answer one failure by cancelling every sibling and the block itself,
    which for the gateway means a purge that hit a full disk would stop the daemon.
    """
    tasks: set[asyncio.Task[None]] = set()

    async def logged(coro: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            await coro
        except Exception:
            log.exception("task_failed", task=name)

    async with asyncio.TaskGroup() as group:

        def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[None]:
            task = group.create_task(logged(coro, name), name=name)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return task

        try:
            yield spawn
        finally:
            for task in list(tasks):
                task.cancel()
