"""Small asyncio helpers shared by the gateway's background tasks."""

from __future__ import annotations

import asyncio


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
