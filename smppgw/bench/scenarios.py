"""One function per measured figure of issue #8, each on a fresh stack of processes.

Every scenario starts its own broker, simulator and gateway (fresh store, fresh broker
session), so no scenario inherits another's backlog, and the gateway's CPU and memory
figures are its own. A scenario returns a :class:`ScenarioResult`: the figures, and the
checks against the issue's targets.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from smppgw.bench.load import DEST_PREFIX, Collector, Publisher, index_of_destination
from smppgw.bench.procs import (
    Broker,
    GatewayProcess,
    ProcSample,
    SimProcess,
    free_port,
    machine_busy,
    start_gateway,
    start_sim,
    thread_cpu,
    tree_sample,
)
from smppgw.bench.stats import Latency, max_in_window, mean_rate

__all__ = [
    "SCENARIOS",
    "Check",
    "CpuMeter",
    "Options",
    "Progress",
    "ScenarioResult",
    "Timeline",
    "achieved_rate",
    "latency",
    "latency_figures",
    "throughput",
]

#: The issue's targets on a 2-core machine.
TARGET_THROUGHPUT = 5000.0  # jobs/s published → delivered, with receipts
TARGET_CPU_US = 150.0  # gateway CPU per message
TARGET_P99_MS = 20.0  # publish → submit_sm at half capacity
TARGET_RSS_MB = 200.0  # gateway RSS with a million jobs queued
THROTTLE_TPS = 100
TARGET_THROTTLE_MEAN = 98.0
#: Job numbers of the OTPs, far above any backlog's.
OTP_BASE = 90_000_000
OTP_COUNT = 5


@dataclass
class Options:
    """Sizes of the runs (``quick()`` gives the ``--quick`` ones)."""

    jobs: int = 50_000
    latency_seconds: float = 20.0
    rate: float | None = None
    throttle_seconds: float = 60.0
    otp_backlog: int = 100_000
    memory_jobs: int = 1_000_000
    workdir: Path | None = None
    keep: bool = False
    #: Throughput the latency scenario runs at half of, when it did not run first.
    capacity: float | None = None
    #: The "unthrottled" carrier's tps in the throughput and latency scenarios: far above
    #: what the gateway can do, so the limit never binds.
    fast_tps: float = 100_000.0
    #: ``store.commit_interval`` for the gateway (None: the gateway's default).
    commit_interval: float | None = None
    #: ``store.writer`` for the gateway (None: the gateway's default).
    store_writer: str | None = None
    #: Directory for py-spy profiles of the gateway during the measured phases.
    profile: Path | None = None
    #: Seconds the simulator waits before sending a receipt (throughput and latency).
    receipt_delay: float = 0.0
    #: Directory for Kannel's spool store with ``--peer kannel`` (None: the run's own).
    kannel_spool: Path | None = None
    #: ``--peer kannel``'s half-load rate (None: half the lower flat-out rate measured).
    half_rate: float | None = None
    #: Seconds each side is fed at the half-load rate with ``--peer kannel``.
    half_seconds: float = 10.0
    #: ``sqlite`` or ``postgres`` (a PostgreSQL and a Redis of the run's own; every
    #: gateway on them, intake through a shared subscription).
    backend: str = "sqlite"
    #: Gateway processes sharing the work (more than one needs ``backend="postgres"``).
    gateways: int = 1

    @classmethod
    def quick(cls) -> Options:
        return cls(
            jobs=10_000,
            latency_seconds=5.0,
            throttle_seconds=10.0,
            otp_backlog=5_000,
            memory_jobs=50_000,
        )


@dataclass(frozen=True, slots=True)
class Check:
    """One target: ``value`` compared with ``limit`` (``at_most`` or at least)."""

    name: str
    value: float
    limit: float
    unit: str
    at_most: bool

    @property
    def ok(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value <= self.limit if self.at_most else self.value >= self.limit


@dataclass
class ScenarioResult:
    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Raw samples for charts (``--plot``): not printed, not in the JSON.
    series: dict[str, Any] = field(default_factory=dict)


class Progress:
    """One status line on stderr, rewritten in place on a terminal, else every 5 s."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._width = 0

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
            self.stream.flush()
        elif now - self._last >= 5.0:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now

    def line(self, text: str) -> None:
        """A permanent line (ends the status line)."""
        if not self.enabled:
            return
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last = 0.0


def carrier(port: int, *, tps: float, sessions: int = 2, window: int = 100) -> dict[str, Any]:
    return {
        "name": "bench",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "bench",
        "password": "bench-secret",
        "tps": tps,
        "sessions": sessions,
        "window": window,
        "source": {"address": "SHOPVN"},
        "prefixes": [DEST_PREFIX],
        "reconnect_min": 0.2,
        "reconnect_max": 2.0,
    }


@dataclass
class Stack:
    """The processes of one scenario."""

    workdir: Path
    broker: Broker
    gateway: GatewayProcess
    collector: Collector
    publisher: Publisher
    sim: SimProcess | None = None
    #: Every gateway (``gateway`` is the first); more than one with ``--gateways``.
    gateways: list[GatewayProcess] = field(default_factory=list)
    #: The PostgreSQL and Redis of a ``--backend postgres`` run.
    servers: dict[str, int] = field(default_factory=dict)

    def children(self) -> dict[str, int]:
        pids = {
            "gateway": self.gateway.pid,
            "mosquitto": self.broker.pid,
            "publisher": self.publisher.pid,
            "collector": self.collector.pid,
        }
        for i, other in enumerate(self.gateways[1:], start=2):
            pids[f"gateway-{i}"] = other.pid
        if self.sim is not None:
            pids["sim"] = self.sim.pid
        pids.update(self.servers)
        return pids


@contextmanager
def stack(
    options: Options,
    name: str,
    *,
    tps: float,
    sim_tps: float | None = None,
    carriers_up: bool = True,
    sessions: int = 2,
    window: int = 100,
) -> Iterator[Stack]:
    """Broker, simulator (unless the carrier is to be down), gateway and load processes,
    started in that order and proven working: the gateway answered a probe job over MQTT
    and every bind is up."""
    base = options.workdir
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"smppgw-bench-{name}-", dir=base))
    with ExitStack() as cleanup:
        if not options.keep:
            cleanup.callback(shutil.rmtree, workdir, True)
        broker = Broker(workdir)
        cleanup.callback(broker.close)
        sim: SimProcess | None = None
        if carriers_up:
            accounts = "bench:bench-secret" + (f":{sim_tps:g}" if sim_tps else "")
            sim = start_sim(
                workdir,
                accounts,
                receipt_delay=options.receipt_delay if sim_tps is None else 0.0,
                extra=["--enquire-link", "0"],
            )
            cleanup.callback(sim.close)
            port = sim.port
        else:
            port = free_port()  # nothing listens: the carrier is down
        store: dict[str, Any] = (
            {} if options.commit_interval is None else {"commit_interval": options.commit_interval}
        )
        if options.store_writer is not None:
            store["writer"] = options.store_writer
        servers: dict[str, int] = {}
        redis_url = None
        if options.backend == "postgres":
            store, redis_url, servers = _cluster_servers(cleanup)
        gateways = []
        for i in range(options.gateways):
            cluster = options.backend == "postgres"
            one = start_gateway(
                workdir,
                broker,
                [carrier(port, tps=tps, sessions=sessions, window=window)],
                store=store,
                name="gateway" if i == 0 else f"gateway-{i + 1}",
                mqtt={"client_id": f"smppgw-bench-{i + 1}", "shared_group": "bench"}
                if cluster
                else None,
                cluster={"node_id": f"bench-{i + 1}", "redis": redis_url} if cluster else None,
            )
            cleanup.callback(one.close)
            gateways.append(one)
        gateway = gateways[0]
        collector = Collector(broker.host, broker.port)
        cleanup.callback(collector.close)
        if not collector.probe(30.0):
            gateway.check()
            raise RuntimeError(f"the gateway never answered a probe job:\n{gateway.log_tail()}")
        if sim is not None:
            deadline = time.monotonic() + 20.0
            while sim.stats()["binds"] < sessions * len(gateways):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"binds not up:\n{gateway.log_tail()}")
                time.sleep(0.05)
        publisher = Publisher(broker.host, broker.port)
        cleanup.callback(publisher.close)
        yield Stack(workdir, broker, gateway, collector, publisher, sim, gateways, servers)
        for one in gateways:
            one.check()


def _cluster_servers(cleanup: ExitStack) -> tuple[dict[str, Any], str, dict[str, int]]:
    """A PostgreSQL and a Redis of the run's own (``--backend postgres``): the gateways'
    store settings, the Redis URL, and their pids for the CPU figures. PostgreSQL runs
    with fsync off and synchronous_commit on: a commit survives the death of any process,
    not an OS crash, which is what the SQLite store's ``synchronous=NORMAL`` promises."""
    from smppgw.cluster.servers import Postgres, Redis

    pg = Postgres().start()
    cleanup.callback(pg.close)
    redis = Redis().start()
    cleanup.callback(redis.close)
    dsn = pg.create_database("bench")
    assert pg.pid is not None and redis.pid is not None
    pids = {"postgres": pg.pid, "redis": redis.pid}
    return {"backend": "postgres", "dsn": dsn}, redis.url, pids


@contextmanager
def profiling(options: Options, pid: int, name: str, result: ScenarioResult) -> Iterator[None]:
    """py-spy on the gateway for the duration of the block, when ``--profile`` asked."""
    if options.profile is None:
        yield
        return
    from smppgw.bench.profile import Profiler, summarise

    options.profile.mkdir(parents=True, exist_ok=True)
    raw = options.profile / f"{name}.raw"
    profiler = Profiler(pid, raw)
    try:
        yield
    finally:
        profiler.stop()
    summary = options.profile / f"{name}.txt"
    summary.write_text(summarise(raw).format(40) + "\n")
    result.notes.append(f"profile: {summary} (collapsed stacks: {raw})")


def _tree(root: int, first: ProcSample) -> ProcSample:
    """``first`` (the root's own reading) plus the CPU of its live child processes."""
    from smppgw.bench.procs import children, sample

    cpu = first.cpu
    for pid in children(root):
        with contextlib.suppress(OSError):  # exited meanwhile
            cpu += sample(pid).cpu
    return ProcSample(first.at, cpu, first.rss, first.hwm)


def wait_until(
    done: Callable[[], bool], timeout: float, tick: Callable[[], None], what: str
) -> None:
    deadline = time.monotonic() + timeout
    last_tick = 0.0
    while not done():
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        if now - last_tick >= 0.5:
            tick()
            last_tick = now
        time.sleep(0.05)


class CpuMeter:
    """CPU seconds of several processes between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.first: dict[str, ProcSample] = {}
        self.last: dict[str, ProcSample] = {}

    def start(self) -> None:
        self._machine0 = machine_busy()
        self._threads0 = thread_cpu(self.pids["gateway"]) if "gateway" in self.pids else {}
        self.first = self._read()
        self._own0 = self._own()

    def stop(self) -> None:
        self.last = self._read()
        self._own1 = self._own()
        self._threads1 = thread_cpu(self.pids["gateway"]) if "gateway" in self.pids else {}
        self._machine1 = machine_busy()

    def gateway_threads(self) -> dict[str, float]:
        """The gateway's CPU seconds split into its event loop (the main thread), its
        other threads (the store's writer thread, with ``store.writer: thread``) and its
        child processes (the store's writer process)."""
        pid = self.pids.get("gateway")
        if pid is None:
            return {}
        spent = {t: c - self._threads0.get(t, 0.0) for t, c in self._threads1.items()}
        main = spent.pop(pid, 0.0)
        own = self.last["gateway"].cpu - self.first["gateway"].cpu
        # The tree and the process are read a moment apart: with no child, a hair below 0.
        children = max(0.0, own - (self._own1 - self._own0))
        return {
            "event_loop": round(main, 2),
            "other_threads": round(sum(spent.values()), 2),
            "child_processes": round(children, 2),
        }

    def others(self) -> float:
        """Cores used by processes that are not part of the benchmark (other load on the
        machine during the measurement; it competes with the gateway for the CPUs)."""
        busy = self._machine1[0] - self._machine0[0]
        wall = next(iter(self.last.values())).at - next(iter(self.first.values())).at
        ours = sum(self.seconds(name) for name in self.pids)
        return round(max(0.0, busy - ours) / wall, 2) if wall > 0 else math.nan

    def _own(self) -> float:
        """The gateway process's own CPU seconds, without its children's."""
        from smppgw.bench.procs import sample

        return sample(self.pids["gateway"]).cpu if "gateway" in self.pids else 0.0

    def _read(self) -> dict[str, ProcSample]:
        from smppgw.bench.procs import sample

        out = {name: sample(pid) for name, pid in self.pids.items()}
        for name in self.pids:
            if name.startswith("gateway"):
                # The gateway's whole CPU: with ``store.writer: process`` its writer is a
                # child process, counted here with it (the process tree, not the pid).
                out[name] = tree_sample(self.pids[name])
        if "postgres" in self.pids:  # the server is a process tree: one backend per client
            out["postgres"] = _tree(self.pids["postgres"], out["postgres"])
        return out

    def gateways_seconds(self) -> float:
        """CPU seconds of every gateway process."""
        return sum(self.seconds(name) for name in self.pids if name.startswith("gateway"))

    def seconds(self, name: str) -> float:
        return self.last[name].cpu - self.first[name].cpu

    def shares(self) -> dict[str, float]:
        """Cores used by each process over the interval (1.0 = one core busy)."""
        out = {}
        for name in self.pids:
            wall = self.last[name].at - self.first[name].at
            out[name] = round(self.seconds(name) / wall, 2) if wall > 0 else math.nan
        out["other processes"] = self.others()
        return out


class StoreMeter:
    """The gateway's store transactions (commits) and operations between two readings,
    from its own metrics: how well group commit is batching at this load."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.first = self._read()
        self.last = self.first

    def _read(self) -> tuple[float, float]:
        try:
            commits = self.gateway.metric_sum("smppgw_store_commit_seconds_count")
            ops = self.gateway.metric_sum("smppgw_store_commit_writes_sum")
        except (OSError, RuntimeError):
            return (math.nan, math.nan)
        return commits, ops

    def stop(self) -> None:
        self.last = self._read()

    def figures(self, jobs: int) -> dict[str, float]:
        commits = self.last[0] - self.first[0]
        ops = self.last[1] - self.first[1]
        return {
            "commits_per_job": round(commits / jobs, 2),
            "operations_per_job": round(ops / jobs, 2),
            "operations_per_commit": round(ops / commits, 1) if commits else math.nan,
        }


class Timeline:
    """(time, finished jobs, CPU seconds) every ``interval`` seconds from a thread of the
    orchestrator, for the over-time charts: evenly spaced, whatever the progress line or
    the load processes' pipes are doing. Sampling is two shared-memory reads and one or
    two ``/proc`` reads, nothing the measured processes notice."""

    def __init__(
        self, done: Callable[[], int], cpu: Callable[[], float], interval: float = 0.2
    ) -> None:
        self.done = done
        self.cpu = cpu
        self.interval = interval
        self.points: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench timeline", daemon=True)

    def _sample(self) -> None:
        with contextlib.suppress(OSError):  # a process that just exited: no point
            self.points.append((time.monotonic(), self.done(), self.cpu()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Timeline:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class Ticker:
    """The progress line of a running scenario: counts, rates, the gateway's CPU use."""

    def __init__(self, progress: Progress, name: str, s: Stack, total: int) -> None:
        self.progress = progress
        self.name = name
        self.stack = s
        self.total = total
        self.started = time.monotonic()
        self._prev = s.gateway.sample()
        self._prev_done = 0
        self.extra: Callable[[], str] | None = None

    def __call__(self) -> None:
        s = self.stack
        now = s.gateway.sample()
        wall = now.at - self._prev.at
        cpu = (now.cpu - self._prev.cpu) / wall * 100 if wall > 0 else 0.0
        done = int(s.collector.finals.value)
        rate = (done - self._prev_done) / wall if wall > 0 else 0.0
        self._prev, self._prev_done = now, done
        text = (
            f"[{self.name}] {time.monotonic() - self.started:5.1f}s  "
            f"published {int(s.publisher.published.value):,}/{self.total:,}  "
            f"submitted {int(s.collector.submitted.value):,}  final {done:,} ({rate:,.0f}/s)  "
            f"gateway cpu {cpu:.0f}% rss {now.rss / 2**20:.0f} MB"
        )
        if self.extra is not None:
            text += "  " + self.extra()
        self.progress.show(text)


# ============================================================================ scenarios


def throughput(options: Options, progress: Progress) -> ScenarioResult:
    """Jobs published → ``delivered`` events, flat out, carriers unthrottled, receipts
    immediate: how many jobs a second the whole pipeline carries, and what one job costs
    the gateway in CPU."""
    result = ScenarioResult("throughput")
    n = options.jobs
    with stack(options, "throughput", tps=options.fast_tps, sessions=2, window=100) as s:
        warm = max(100, min(2000, n // 10))
        tick = Ticker(progress, "throughput warm-up", s, warm)
        s.publisher.burst(1_000_000_000 - warm - 1, warm, tick=tick)
        wait_until(lambda: s.collector.finals.value >= warm, 120, tick, "the warm-up jobs")
        s.collector.reset()
        s.publisher.published.value = 0
        meter = CpuMeter(s.children())
        tick = Ticker(progress, "throughput", s, n)
        store_meter = StoreMeter(s.gateway)
        timeline = Timeline(lambda: int(s.collector.finals.value), lambda: s.gateway.sample().cpu)
        with profiling(options, s.gateway.pid, "throughput", result), timeline:
            meter.start()
            start, published_at = s.publisher.burst(0, n, tick=tick)
            wait_until(
                lambda: s.collector.finals.value >= n, 60 + n / 500, tick, "every delivered event"
            )
            meter.stop()
            store_meter.stop()
        end = s.collector.last_final.value
        events = s.collector.result()
        gw = s.gateway.sample()
    elapsed = end - start
    delivered = sum(1 for status, _ in events.final.values() if status == "delivered")
    rate = n / elapsed
    cpu_us = meter.gateways_seconds() / n * 1e6
    result.figures.update(shared_store_figures(options, meter, n))
    result.figures.update(
        jobs=n,
        seconds=round(elapsed, 3),
        jobs_per_second=round(rate, 1),
        publish_seconds=round(published_at - start, 3),
        publish_rate=round(n / (published_at - start), 1),
        delivered=delivered,
        statuses=events.counts,
        gateway_cpu_us_per_job=round(cpu_us, 1),
        gateway_cpu_seconds=round(meter.gateways_seconds(), 2),
        load_cpu_us_per_job=round(
            (meter.seconds("publisher") + meter.seconds("collector")) / n * 1e6, 1
        ),
        gateway_rss_mb=round(gw.rss / 2**20, 1),
        gateway_peak_rss_mb=round(gw.hwm / 2**20, 1),
        store=store_meter.figures(n),
        gateway_cpu_us_per_job_by_thread={
            k: round(v / n * 1e6, 1) for k, v in meter.gateway_threads().items()
        },
        cores_used=meter.shares(),
    )
    result.checks.append(
        Check("throughput with receipts", rate, TARGET_THROUGHPUT, "jobs/s", at_most=False)
    )
    result.checks.append(
        Check("gateway CPU per job (flat out)", cpu_us, TARGET_CPU_US, "µs", at_most=True)
    )
    if delivered != n:
        result.notes.append(f"only {delivered} of {n} jobs ended delivered: {events.counts}")
    result.series.update(start=start, timeline=timeline.points)
    options.capacity = rate
    return result


def latency(options: Options, progress: Progress) -> ScenarioResult:
    """Publish → submit_sm at the SMSC and publish → ``submitted`` event, with the load at
    half the measured capacity (paced evenly, not in bursts)."""
    result = ScenarioResult("latency")
    if options.rate is not None:
        rate = options.rate
    else:
        if options.capacity is None:
            progress.line("latency: measuring capacity first (throughput scenario)")
            throughput(options, progress)
        assert options.capacity is not None
        rate = options.capacity / 2
    seconds = options.latency_seconds
    count = max(1, int(rate * seconds))
    warm = max(1, int(rate * min(2.0, seconds / 4)))
    with stack(options, "latency", tps=options.fast_tps, sessions=2, window=100) as s:
        tick = Ticker(progress, f"latency warm-up @ {rate:,.0f}/s", s, warm)
        s.publisher.paced(50_000_000, warm, rate, tick=tick)
        wait_until(lambda: s.collector.finals.value >= warm, 60, tick, "the warm-up jobs")
        s.collector.reset()
        s.publisher.published.value = 0
        assert s.sim is not None
        since = s.sim.stats()["submits_accepted"]
        meter = CpuMeter(s.children())
        tick = Ticker(progress, f"latency @ {rate:,.0f}/s", s, count)
        store_meter = StoreMeter(s.gateway)
        with profiling(options, s.gateway.pid, "latency", result):
            meter.start()
            times = s.publisher.paced(0, count, rate, tick=tick)
            wait_until(lambda: s.collector.finals.value >= count, 120, tick, "every final event")
            meter.stop()
            store_meter.stop()
        events = s.collector.result()
        progress.show("[latency] reading the simulator's submits")
        submits = s.sim.all_submits(since)
    arrived: dict[int, float] = {}
    for item in submits:
        index = index_of_destination(item["destination"])
        if index is not None and index < count:
            arrived.setdefault(index, item["at"])
    smsc_seconds = [arrived[i] - times[i] for i in arrived]
    final_seconds = [t - times[i] for i, (_, t) in events.final.items() if i < count]
    to_smsc = Latency.of(smsc_seconds)
    to_event = Latency.of(events.submitted[i] - times[i] for i in events.submitted if i < count)
    to_final = Latency.of(final_seconds)
    result.series.update(
        rate=rate, publish_to_submit_sm=smsc_seconds, publish_to_delivered=final_seconds
    )
    cpu_us = meter.gateways_seconds() / count * 1e6
    result.figures.update(shared_store_figures(options, meter, count))
    delivered = sum(
        1 for i, (status, _) in events.final.items() if i < count and status == "delivered"
    )
    result.figures.update(
        rate=round(rate, 1),
        jobs=count,
        delivered=delivered,
        achieved_rate=achieved_rate(
            delivered,
            min(times),
            max((t for i, (_, t) in events.final.items() if i < count), default=None),
            options.receipt_delay,
        ),
        publish_to_submit_sm_ms=latency_figures(to_smsc),
        publish_to_submitted_event_ms=latency_figures(to_event),
        publish_to_delivered_event_ms=latency_figures(to_final),
        gateway_cpu_us_per_job=round(cpu_us, 1),
        store=store_meter.figures(count),
        gateway_cpu_us_per_job_by_thread={
            k: round(v / count * 1e6, 1) for k, v in meter.gateway_threads().items()
        },
        cores_used=meter.shares(),
    )
    result.checks.append(
        Check("p99 publish → submit_sm @ 50 %", to_smsc.p99, TARGET_P99_MS, "ms", at_most=True)
    )
    result.checks.append(
        Check("gateway CPU per job @ 50 %", cpu_us, TARGET_CPU_US, "µs", at_most=True)
    )
    if to_smsc.count != count:
        result.notes.append(f"{count - to_smsc.count} submits missing at the simulator")
    return result


def shared_store_figures(options: Options, meter: CpuMeter, jobs: int) -> dict[str, Any]:
    """With ``--backend postgres``: the backend, the gateways and the CPU a job of the
    PostgreSQL and the Redis they share (part of what smppgw costs, as Kannel's store is
    part of bearerbox: :func:`system_cpu_us_per_job`). Nothing for SQLite, whose writer
    process is in the gateway's own tree."""
    if options.backend != "postgres":
        return {}
    return {
        "backend": "postgres",
        "gateways": options.gateways,
        "database_cpu_us_per_job": round(meter.seconds("postgres") / jobs * 1e6, 1),
        "redis_cpu_us_per_job": round(meter.seconds("redis") / jobs * 1e6, 1),
    }


def system_cpu_us_per_job(figures: dict[str, Any]) -> float:
    """Everything smppgw runs on, a job: every gateway (its writer process included) and,
    on PostgreSQL, the database and Redis."""
    parts = ("gateway_cpu_us_per_job", "database_cpu_us_per_job", "redis_cpu_us_per_job")
    return round(sum(float(figures.get(name, 0.0)) for name in parts), 1)


def achieved_rate(delivered: int, start: float, end: float | None, delay: float) -> float:
    """Jobs delivered a second from the first job sent (``start``) to the last final
    event (``end``) less the SMSC's receipt delay: the flat-out rate's definition,
    applied to a paced run, where it comes out at the pace when the side keeps up."""
    if end is None or end - start - delay <= 0:
        return math.nan
    return round(delivered / (end - start - delay), 1)


def throttle(options: Options, progress: Progress) -> ScenarioResult:
    """A carrier at tps 100 with a backlog: the most submit_sm the SMSC sees in any
    sliding second (≤ 100) and the mean rate over the measuring period (≥ 98). The
    simulated account enforces 100 TPS too and counts what it would have throttled."""
    result = ScenarioResult("throttle")
    tps = THROTTLE_TPS
    seconds = options.throttle_seconds
    backlog = int(tps * (seconds + 5))
    with stack(options, "throttle", tps=tps, sim_tps=tps, sessions=2, window=10) as s:
        assert s.sim is not None
        sim = s.sim
        tick = Ticker(progress, f"throttle {tps} TPS", s, backlog)
        first: list[float] = []

        def at_sim() -> str:
            return f"smsc {sim.stats()['accepted_per_second']:.0f}/s"

        tick.extra = at_sim
        s.publisher.burst(0, backlog, "normal", tick=tick)

        def started() -> bool:
            page = sim.submits(0, 1)["submits"]
            if page:
                first.append(page[0]["at"])
            return bool(first)

        wait_until(started, 30, tick, "the first submit")
        wait_until(
            lambda: time.monotonic() > first[0] + seconds + 1.5,
            seconds + 30,
            tick,
            f"{seconds:g} s of submits",
        )
        stats = sim.stats()
        times = sorted(item["at"] for item in sim.all_submits(0))
    peak, _ = max_in_window(times, 1.0)
    mean = mean_rate(times, times[0], seconds)
    result.series.update(tps=tps, seconds=seconds, submit_times=times)
    result.figures.update(
        tps=tps,
        seconds=seconds,
        backlog=backlog,
        submits=len(times),
        max_in_any_1s_window=peak,
        mean_rate=round(mean, 2),
        smsc_throttled=stats["submits_throttled"],
    )
    result.checks.append(
        Check(f"max submit_sm in any 1 s (tps {tps})", peak, tps, "", at_most=True)
    )
    result.checks.append(
        Check(f"mean rate over {seconds:g} s", mean, TARGET_THROTTLE_MEAN, "/s", at_most=False)
    )
    return result


def otp(options: Options, progress: Progress) -> ScenarioResult:
    """``low`` campaign of ``otp_backlog`` jobs queued at a tps-100 carrier, then ``high``
    jobs one at a time: publish → submit_sm of each (target: two token intervals)."""
    result = ScenarioResult("otp")
    tps = THROTTLE_TPS
    backlog = options.otp_backlog
    with stack(options, "otp", tps=tps, sim_tps=tps, sessions=2, window=10) as s:
        assert s.sim is not None
        sim = s.sim
        gateway = s.gateway
        tick = Ticker(progress, "otp: queueing the campaign", s, backlog)
        received = [0.0]

        def intake() -> str:
            received[0] = gateway.metric_sum("smppgw_jobs_received_total")
            return f"committed {received[0]:,.0f}"

        tick.extra = intake
        s.publisher.burst(0, backlog, "low", tick=tick)
        wait_until(
            lambda: gateway.metric_sum("smppgw_jobs_received_total") >= backlog,
            120 + backlog / 500,
            tick,
            "the gateway to commit the campaign",
        )
        since = sim.stats()["submits_accepted"]
        sent: list[float] = []
        for k in range(OTP_COUNT):
            time.sleep(0.5)
            sent.append(s.publisher.one(OTP_BASE + k, "high"))
            progress.show(f"[otp] high job {k + 1}/{OTP_COUNT} published")
        wanted = set(range(OTP_BASE, OTP_BASE + OTP_COUNT))
        arrived: dict[int, tuple[float, int]] = {}

        def all_arrived() -> bool:
            for item in sim.all_submits(since):
                index = index_of_destination(item["destination"])
                if index in wanted:
                    arrived.setdefault(index, (item["at"], item["index"]))
            return len(arrived) == OTP_COUNT

        wait_until(all_arrived, 30, lambda: None, "the high jobs at the SMSC")
        events = s.collector.result()
        queued_low = backlog - int(
            sum(1 for i in events.submitted if i < backlog)
        )  # low jobs still waiting when the last OTP went
    latencies = [(arrived[OTP_BASE + k][0] - sent[k]) * 1000 for k in range(OTP_COUNT)]
    to_event = [
        (events.submitted[OTP_BASE + k] - sent[k]) * 1000
        for k in range(OTP_COUNT)
        if OTP_BASE + k in events.submitted
    ]
    worst = max(latencies)
    result.figures.update(
        tps=tps,
        campaign=backlog,
        low_jobs_still_queued=queued_low,
        publish_to_submit_sm_ms=[round(x, 1) for x in latencies],
        publish_to_submitted_event_ms=[round(x, 1) for x in to_event],
        max_ms=round(worst, 1),
    )
    result.checks.append(
        Check("OTP publish → submit_sm behind a campaign", worst, 2000.0 / tps, "ms", True)
    )
    return result


def memory(options: Options, progress: Progress) -> ScenarioResult:
    """``memory_jobs`` jobs queued with the carrier down: the gateway's RSS after intake."""
    result = ScenarioResult("memory")
    n = options.memory_jobs
    with stack(options, "memory", tps=THROTTLE_TPS, carriers_up=False) as s:
        gateway = s.gateway
        tick = Ticker(progress, "memory: carrier down, queueing", s, n)
        committed = [0.0]

        def intake() -> str:
            committed[0] = gateway.metric_sum("smppgw_jobs_received_total")
            return f"committed {committed[0]:,.0f}"

        tick.extra = intake
        meter = CpuMeter(s.children())
        with profiling(options, s.gateway.pid, "memory", result):
            meter.start()
            start, _ = s.publisher.burst(0, n, "normal", tick=tick)
            wait_until(
                lambda: gateway.metric_sum("smppgw_jobs_received_total") >= n,
                300 + n / 200,
                tick,
                "the gateway to commit every job",
            )
            done = time.monotonic()
            meter.stop()
        time.sleep(1.0)
        gw = gateway.sample()
        db = sum(
            p.stat().st_size for p in gateway.store_path.parent.glob(gateway.store_path.name + "*")
        )
    rss = gw.rss / 2**20
    result.figures.update(
        jobs=n,
        intake_seconds=round(done - start, 2),
        intake_jobs_per_second=round(n / (done - start), 1),
        gateway_cpu_us_per_job_intake=round(meter.seconds("gateway") / n * 1e6, 1),
        gateway_rss_mb=round(rss, 1),
        gateway_peak_rss_mb=round(gw.hwm / 2**20, 1),
        store_mb=round(db / 2**20, 1),
    )
    scaled = f"{n:,} jobs queued"
    result.checks.append(Check(f"gateway RSS, {scaled}", rss, TARGET_RSS_MB, "MB", True))
    return result


def latency_figures(latency: Latency) -> dict[str, float]:
    return {
        "count": latency.count,
        "p50": round(latency.p50, 2),
        "p90": round(latency.p90, 2),
        "p99": round(latency.p99, 2),
        "max": round(latency.max, 2),
        "mean": round(latency.mean, 2),
    }


SCENARIOS: dict[str, Callable[[Options, Progress], ScenarioResult]] = {
    "throughput": throughput,
    "latency": latency,
    "throttle": throttle,
    "otp": otp,
    "memory": memory,
}
