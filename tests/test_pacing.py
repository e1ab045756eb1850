"""``LoopPacer``: sleeps after empty event-loop iterations while there is work, steps aside
when there is none, and never after an iteration that did work."""

from __future__ import annotations

import asyncio
import socket
import time

import uvloop

from smppgw.pacing import LoopPacer


async def _echo_pair() -> tuple[socket.socket, asyncio.StreamReader, asyncio.StreamWriter]:
    """A real socket pair: the far end in plain blocking mode, the near end on the loop."""
    near, far = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=near)
    return far, reader, writer


async def _steady_traffic(far: socket.socket, stop: asyncio.Event) -> None:
    """Bytes arriving every millisecond, as MQTT packets would."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await loop.run_in_executor(None, far.send, b"x")
        await asyncio.sleep(0.001)


async def test_an_idle_loop_steps_aside_and_sleeps_in_epoll() -> None:
    pacer = LoopPacer(idle_after=0.02, idle_look=0.05)
    pacer.start()
    try:
        await asyncio.sleep(0.1)  # nothing else runs: the pacer's iterations are empty
        assert pacer.idled >= 1
        assert not pacer.pacing
        slept = pacer.slept
        cpu = time.thread_time()
        await asyncio.sleep(0.5)
        # Stepped aside: no paced iterations, and the thread idles in epoll (a loop pacing
        # at 0.1 ms would take ~10 % of it and sleep ~4,000 times here).
        assert pacer.slept == slept
        assert time.thread_time() - cpu < 0.02
    finally:
        pacer.stop()


async def test_a_paced_loop_answers_within_the_gap() -> None:
    far, reader, writer = await _echo_pair()
    stop = asyncio.Event()
    traffic = asyncio.ensure_future(_steady_traffic(far, stop))

    async def drain() -> None:
        while not stop.is_set():
            await reader.read(4096)

    drainer = asyncio.ensure_future(drain())
    pacer = LoopPacer(gap=0.0005, idle_after=1.0)
    pacer.start()
    try:
        await asyncio.sleep(0.1)
        assert pacer.pacing and pacer.slept > 0
        loop = asyncio.get_running_loop()
        waits = []
        for _ in range(50):
            answered = loop.create_future()
            sent = time.monotonic()
            loop.call_soon_threadsafe(answered.set_result, None)  # from "outside" the loop
            await answered
            waits.append(time.monotonic() - sent)
            await asyncio.sleep(0.002)
        waits.sort()
        # At most a gap (0.5 ms) plus the wake-up: the median well under 2 ms.
        assert waits[len(waits) // 2] < 0.002
    finally:
        pacer.stop()
        stop.set()
        far.close()
        await asyncio.gather(traffic, return_exceptions=True)
        drainer.cancel()
        writer.close()


async def test_iterations_with_work_run_unpaced() -> None:
    pacer = LoopPacer(gap=0.01, idle_after=10.0)
    pacer.start()
    try:
        await asyncio.sleep(0.02)
        slept = pacer.slept
        started = time.monotonic()
        for _ in range(100):  # each step resolves the next: one iteration each
            deadline = time.monotonic() + 0.0003  # work in every iteration (> EMPTY)
            while time.monotonic() < deadline:
                pass
            await asyncio.sleep(0)
        # 100 iterations with work in them: none followed by a 10 ms sleep.
        assert time.monotonic() - started < 0.2
        assert pacer.slept - slept <= 2
    finally:
        pacer.stop()


async def test_the_loop_paces_again_when_work_returns() -> None:
    far, reader, writer = await _echo_pair()
    pacer = LoopPacer(gap=0.0002, idle_after=0.02, idle_look=0.05)
    pacer.start()
    stop = asyncio.Event()
    try:
        await asyncio.sleep(0.1)
        assert not pacer.pacing  # idle: stepped aside

        async def busy_reader() -> None:
            while not stop.is_set():
                await reader.read(4096)
                deadline = time.thread_time() + 0.0003  # some work per packet
                while time.thread_time() < deadline:
                    pass

        consumer = asyncio.ensure_future(busy_reader())
        traffic = asyncio.ensure_future(_steady_traffic(far, stop))
        await asyncio.sleep(0.3)
        assert pacer.pacing
    finally:
        pacer.stop()
        stop.set()
        far.close()
        await asyncio.gather(traffic, return_exceptions=True)
        consumer.cancel()
        writer.close()


def test_it_paces_under_uvloop_too() -> None:
    """The gateway's loop is uvloop's: the pacer's call chain and sleeps work there."""

    async def main() -> tuple[int, int]:
        pacer = LoopPacer(gap=0.0002, idle_after=0.05)
        pacer.start()
        await asyncio.sleep(0.02)
        slept = pacer.slept
        await asyncio.sleep(0.2)
        idled = pacer.idled
        pacer.stop()
        return slept, idled

    slept, idled = uvloop.run(main())
    assert slept > 0  # it slept after empty iterations before stepping aside
    assert idled >= 1
