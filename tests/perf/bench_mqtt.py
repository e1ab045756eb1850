"""MQTT throughput of smppgw.mqtt.MqttClient against a real mosquitto on loopback.

    .venv/bin/python tests/perf/bench_mqtt.py [--messages 50000] [--concurrency 1000]
                                              [--inflight 20] [--no-uvloop]

Figures (messages per second, QoS 1):

* publish: ``concurrency`` coroutines share ``messages`` publishes, each awaiting its PUBACK;
  no subscriber, so the broker only acknowledges.
* receive: ``messages`` are queued in our persistent session while we are offline, then we
  connect and time until every handler has returned (PUBACK after each handler, as intake).
* end to end: publishing and receiving at once through one broker (two clients).

``--inflight`` is mosquitto's ``max_inflight_messages``, which it also announces as the
CONNACK Receive Maximum (20 is mosquitto's default); it bounds our publish window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support.broker

from smppgw.config import MqttConfig
from smppgw.mqtt import Message, MqttClient

from support.broker import Mosquitto

PAYLOAD = (
    b'{"id":"order-00001984","to":"84912345678","text":"Don hang 1984 da duoc giao.",'
    b'"priority":"normal","dlr":true}'
)


def cfg(broker: Mosquitto, client_id: str) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, client_id=client_id, keepalive=60)


async def publish_all(client: MqttClient, topic: str, messages: int, concurrency: int) -> None:
    remaining = messages

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await client.publish(topic, PAYLOAD)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def bench_publish(broker: Mosquitto, messages: int, concurrency: int) -> float:
    async with MqttClient(cfg(broker, "bench-pub")) as pub:
        await publish_all(pub, "bench/nobody", 1000, concurrency)  # warm-up
        started = time.perf_counter()
        await publish_all(pub, "bench/nobody", messages, concurrency)
        elapsed = time.perf_counter() - started
        print(f"  publish window (Receive Maximum - reserve): {pub.window}")
    return messages / elapsed


class Counter:
    def __init__(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()


async def bench_receive(broker: Mosquitto, messages: int, concurrency: int) -> float:
    counter = Counter(messages)
    async with MqttClient(cfg(broker, "bench-sub"), on_message=counter) as sub:
        await sub.subscribe("bench/queued")
    async with MqttClient(cfg(broker, "bench-filler")) as pub:
        await publish_all(pub, "bench/queued", messages, concurrency)
    started = time.perf_counter()
    async with MqttClient(cfg(broker, "bench-sub"), on_message=counter):
        await asyncio.wait_for(counter.done.wait(), 300)
        elapsed = time.perf_counter() - started
    return messages / elapsed


async def bench_end_to_end(broker: Mosquitto, messages: int, concurrency: int) -> float:
    counter = Counter(messages)
    async with (
        MqttClient(cfg(broker, "bench-e2e-sub"), on_message=counter) as sub,
        MqttClient(cfg(broker, "bench-e2e-pub")) as pub,
    ):
        await sub.subscribe("bench/e2e")
        started = time.perf_counter()
        await publish_all(pub, "bench/e2e", messages, concurrency)
        await asyncio.wait_for(counter.done.wait(), 300)
        elapsed = time.perf_counter() - started
    return messages / elapsed


async def main(args: argparse.Namespace) -> None:
    print(
        f"mqtt bench: {args.messages} messages of {len(PAYLOAD)} B, QoS 1, "
        f"{args.concurrency} concurrent publishers, mosquitto max_inflight_messages="
        f"{args.inflight}, cpu={os.cpu_count()}, loop={'uvloop' if args.uvloop else 'asyncio'}"
    )
    with Mosquitto(max_inflight_messages=args.inflight) as broker:
        rate = await bench_publish(broker, args.messages, args.concurrency)
        print(f"  publish (await PUBACK):        {rate:10,.0f} msg/s")
        rate = await bench_receive(broker, args.messages, args.concurrency)
        print(f"  receive (PUBACK after handler): {rate:10,.0f} msg/s")
        rate = await bench_end_to_end(broker, args.messages, args.concurrency)
        print(f"  end to end (publish+receive):  {rate:10,.0f} msg/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--inflight", type=int, default=20)
    parser.add_argument("--no-uvloop", dest="uvloop", action="store_false")
    arguments = parser.parse_args()
    if arguments.uvloop:
        import uvloop

        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
