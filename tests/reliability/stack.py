"""The processes of a fault-injection run, as production runs them: each its own OS process.

* the broker: :class:`support.broker.Mosquitto` (real mosquitto, persistence on);
* the SMSC: ``smppgw sim --config FILE`` (:class:`SimProc`), driven through its HTTP control
  port: ``GET /stats``, ``GET /submits``, ``POST /config`` (faults), ``POST /mo``;
* the gateway: ``smppgw run --config FILE`` (:class:`GatewayProc`), which the tests kill
  with SIGKILL, stop with SIGTERM and restart on the same store;
* the client side: :class:`Observer`, an MQTT client in the test process that publishes jobs
  and records every event the gateway publishes.

Why processes and not the in-process harness: ``kill -9`` has to kill the gateway and only
the gateway, mid-write, with the kernel keeping what it had been given and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from smppgw.config import MqttConfig
from smppgw.mqtt import Message, MqttClient, MqttUnavailable
from smppgw.procs import Child, ChildError, fresh_ports, sample

from support.broker import Mosquitto, free_port

FINAL = frozenset({"delivered", "undelivered", "expired", "rejected", "failed"})
SYSTEM_ID = "shop"
#: Distinctive passwords, so the security test can grep for them anywhere.
CARRIER_PASSWORD = "Carrier-Pw-7f3a91"
MQTT_PASSWORD = "Mqtt-Pw-c0ffee42"
PYTHON = sys.executable
#: What ``smppgw sim`` prints once bound: its SMPP port, its control port.
_LISTEN = re.compile(rb"listening on [\d.]+:(\d+)")
_CONTROL = re.compile(rb"control on http://[\d.]+:(\d+)")


# ----------------------------------------------------------------------------- HTTP


def _http(
    port: int, method: str, path: str, body: Any = None, timeout: float = 30.0
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return response.status, raw.decode("utf-8", "replace")
    finally:
        conn.close()


# ----------------------------------------------------------------------------- simulator


@dataclass
class Submit:
    """One submit_sm the SMSC accepted (from ``GET /submits``)."""

    index: int
    message_id: str
    text: str
    destination: str
    answered: bool
    at: float
    #: registered_delivery asked for a receipt
    wants_receipt: bool = True


class SimProc:
    """``smppgw sim`` as a child process with a YAML config and an HTTP control port."""

    def __init__(
        self,
        directory: Path,
        *,
        name: str = "viettel",
        port: int = 0,
        tps: float | None = None,
        receipt_delay: float = 0.3,
        **settings: Any,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = port
        self.control_port = 0
        account: dict[str, Any] = {"system_id": SYSTEM_ID, "password": CARRIER_PASSWORD}
        if tps is not None:
            account["tps"] = tps
        body: dict[str, Any] = {
            "listen": f"127.0.0.1:{port}",
            "control": "127.0.0.1:0",
            "accounts": [account],
            "receipt_delay": receipt_delay,
            "enquire_link_interval": 0,
            # A real SMSC keeps trying a receipt for hours; three tries a second apart
            # would turn a gateway restart into lost receipts that are not its fault.
            "deliver_attempts": 1000,
            "deliver_timeout": 5.0,
            "keep_submits": 2_000_000,
        }
        body.update(settings)
        self.config_path = self.dir / f"sim-{name}.yaml"
        self.config_path.write_text(yaml.safe_dump({"smscs": {name: body}}))
        self.log_path = self.dir / f"sim-{name}.log"
        argv = [PYTHON, "-m", "smppgw", "sim", "--config", str(self.config_path)]
        self.child = Child(f"sim {name}", argv, self.log_path, capture_stdout=True)

    def start(self, timeout: float = 15.0) -> SimProc:
        self.child.start()
        self.port, self.control_port = self.child.read_stdout([_LISTEN, _CONTROL], timeout)
        return self

    def stop(self) -> None:
        self.child.stop(10.0, kill_after=10.0)

    # -- control port (blocking; call through asyncio.to_thread from async code) --------
    def stats(self) -> dict[str, Any]:
        status, body = _http(self.control_port, "GET", "/stats")
        assert status == 200, body
        return dict(body)

    def set_faults(self, **changes: Any) -> None:
        status, body = _http(self.control_port, "POST", "/config", changes)
        assert status == 200, body

    def mo(self, source: str, destination: str, text: str) -> None:
        status, body = _http(
            self.control_port, "POST", "/mo", {"from": source, "to": destination, "text": text}
        )
        assert status == 202, body

    def submits(self) -> list[Submit]:
        out: list[Submit] = []
        since = 0
        while True:
            status, body = _http(self.control_port, "GET", f"/submits?since={since}&limit=50000")
            assert status == 200, body
            items = body["submits"]
            for item in items:
                out.append(
                    Submit(
                        index=item["index"],
                        message_id=item["message_id"],
                        text=bytes.fromhex(item["short_message"]).decode("latin-1"),
                        destination=item["destination"],
                        answered=item["answered"],
                        at=item["at"],
                        wants_receipt=bool(item["registered_delivery"] & 0x03),
                    )
                )
            if not items:
                return out
            since = body["next"]

    async def astats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.stats)

    async def afaults(self, **changes: Any) -> None:
        await asyncio.to_thread(self.set_faults, **changes)

    async def asubmits(self) -> list[Submit]:
        return await asyncio.to_thread(self.submits)

    async def amo(self, source: str, destination: str, text: str) -> None:
        await asyncio.to_thread(self.mo, source, destination, text)

    async def wait_quiet(self, timeout: float = 30.0) -> dict[str, Any]:
        """Until the SMSC owes the gateway nothing: no receipt or MO queued or unanswered."""
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.astats()
            if stats["deliveries_queued"] == 0 and stats["deliveries_outstanding"] == 0:
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"SMSC still has deliveries pending: {stats}")
            await asyncio.sleep(0.2)


# ----------------------------------------------------------------------------- gateway


def carrier_entry(sim: SimProc, name: str | None = None, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name or sim.name,
        "host": "127.0.0.1",
        "port": sim.port,
        "system_id": SYSTEM_ID,
        "password": CARRIER_PASSWORD,
        "tps": 200,
        "window": 20,
        "source": {"address": "SHOPVN"},
        "prefixes": ["8498"],
        "reconnect_min": 0.05,
        "reconnect_max": 0.5,
        "response_timeout": 3.0,
        "receipt_hold": 2.0,
    }
    entry.update(overrides)
    return entry


class GatewayProc:
    """``smppgw run`` as a child process on a persistent store, killable and restartable."""

    def __init__(
        self,
        directory: Path,
        broker: Mosquitto,
        carriers: list[dict[str, Any]],
        *,
        client_id: str = "gw-rel",
        store_path: Path | None = None,
        metrics: bool = True,
        log_level: str = "info",
        mqtt: dict[str, Any] | None = None,
        **top: Any,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store_path = store_path or self.dir / "gw.db"
        self.metrics_port = free_port() if metrics else None
        config: dict[str, Any] = {
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": client_id},
            "store": {"path": str(self.store_path)},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}" if self.metrics_port else None},
            "log": {"level": log_level, "format": "json"},
            "ctl": {"socket": None},  # never the host's /run/smppgw
            "carriers": carriers,
            "drain_timeout": 5.0,
        }
        config["mqtt"].update(mqtt or {})
        config.update(top)
        self.config = config
        self.config_path = self.dir / "gw.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self._metrics_planned = metrics and "metrics" not in top
        self.log_path = self.dir / "gw.log"
        argv = [PYTHON, "-m", "smppgw", "run", "--config", str(self.config_path)]
        self.child = Child("smppgw run", argv, self.log_path)
        self.starts = 0
        self.kills = 0
        self.peak_rss = 0

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The running process, None once it was killed or terminated."""
        return self.child.proc if self.child.running else None

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def alive(self) -> bool:
        return self.child.running

    def log_text(self) -> str:
        return self.child.log_text()

    async def start(self, timeout: float = 20.0) -> GatewayProc:
        """Start (or restart) and wait until it logs ``gateway_ready``. A metrics port
        planned here that another process took meanwhile is planned anew (a restart too:
        only the tests read it, through ``metrics_port``)."""
        try:
            for attempt in fresh_ports(may_replan=self._metrics_planned):
                with attempt:
                    if attempt.number > 1:
                        self.metrics_port = free_port()
                        self.config["metrics"]["listen"] = f"127.0.0.1:{self.metrics_port}"
                        self.config_path.write_text(yaml.safe_dump(self.config))
                    self.child.start()
                    await self.child.wait_logged('"gateway_ready"', timeout)
        except ChildError as exc:
            raise AssertionError(f"gateway did not start: {exc}") from None
        self.starts += 1
        return self

    def kill9(self) -> None:
        assert self.alive
        self.note_rss()
        self.child.kill()
        self.kills += 1

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the drain; returns the exit code."""
        assert self.alive
        self.note_rss()
        self.child.signal(signal.SIGTERM)
        try:
            return await self.child.wait(timeout)
        except subprocess.TimeoutExpired:
            self.child.kill()
            raise AssertionError("gateway did not stop within the drain timeout") from None

    def close(self) -> None:
        self.child.kill()

    def note_rss(self) -> int:
        """Peak RSS (VmHWM) of the running process, remembered across restarts."""
        if self.alive:
            with contextlib.suppress(OSError):
                self.peak_rss = max(self.peak_rss, sample(self.pid).hwm)
        return self.peak_rss

    def rss(self) -> int:
        return sample(self.pid).rss

    def metrics(self) -> str:
        assert self.metrics_port is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += float(value)
        return total

    def read_store(self) -> StoreView:
        """The store's view of every job (read-only; call when the gateway is stopped)."""
        conn = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True)
        try:
            jobs = {
                job_id: (state, status, code)
                for job_id, state, status, code in conn.execute(
                    "SELECT job_id, state, status, error_code FROM jobs"
                )
            }
            outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        finally:
            conn.close()
        return StoreView(jobs, outbox)


@dataclass
class StoreView:
    #: job_id → (state, status, error_code); state 4 = final, 3 = submitted.
    jobs: dict[str, tuple[int, str | None, str | None]]
    outbox: int


# ----------------------------------------------------------------------------- observer


@dataclass
class Status:
    status: str
    message_ids: tuple[str, ...]
    code: str | None


class Observer:
    """The business side: publishes jobs (QoS 1) and records every event the gateway sends.

    A persistent session (clean start off), so that events queued by the broker while this
    client is reconnecting are delivered, not dropped."""

    def __init__(
        self,
        broker: Mosquitto,
        client_id: str = "observer",
        *,
        keep: bool = True,
        submitted_is_final: bool = False,
    ):
        self.client = MqttClient(
            MqttConfig(host=broker.host, port=broker.port, client_id=client_id, keepalive=10),
            on_message=self._record,
        )
        self.keep = keep
        #: Jobs sent with ``dlr: false`` end at ``submitted``.
        self.final_statuses = FINAL | {"submitted"} if submitted_is_final else FINAL
        self.statuses: dict[str, list[Status]] = defaultdict(list)
        self.finals: dict[str, Counter[str]] = defaultdict(Counter)
        self.unmatched: Counter[str] = Counter()
        self.inbound: Counter[str] = Counter()
        #: ``sms/reply/<job key>`` → the replies published there.
        self.replies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.rejected: list[dict[str, Any]] = []
        self.events = 0
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Observer:
        await self.client.__aenter__()
        for topic in (
            "sms/status/#",
            "sms/status-unmatched",
            "sms/inbound/#",
            "sms/rejected",
            "sms/reply/#",
        ):
            await self.client.subscribe(topic)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(None, None, None)

    async def _record(self, message: Message) -> None:
        self.events += 1
        topic = message.topic
        data = orjson.loads(message.payload)
        if topic.startswith("sms/status/"):
            job_id = topic[len("sms/status/") :]
            status = data["status"]
            if status in self.final_statuses:
                self.finals[job_id][status] += 1
            if self.keep or status in self.final_statuses:
                error = data.get("error") or {}
                self.statuses[job_id].append(
                    Status(status, tuple(data.get("message_ids") or ()), error.get("code"))
                )
        elif topic == "sms/status-unmatched":
            self.unmatched[data["id"]] += 1
        elif topic.startswith("sms/inbound/"):
            self.inbound[data["text"]] += 1
        elif topic.startswith("sms/reply/"):
            self.replies[topic[len("sms/reply/") :]].append(data)
        elif topic == "sms/rejected":
            self.rejected.append(data)
        self._changed.set()

    async def publish(self, job: dict[str, Any]) -> None:
        await self.client.publish("sms/submit", orjson.dumps(job))

    async def publish_acked(self, job: dict[str, Any], timeout: float = 60.0) -> int:
        """Publish until the broker PUBACKs it, as a careful client does across a broker
        outage (the job id makes a re-publish harmless); returns the attempts it took."""
        payload = orjson.dumps(job)
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            attempts += 1
            try:
                await self.client.publish("sms/submit", payload, timeout=5.0)
                return attempts
            except MqttUnavailable:
                if time.monotonic() > deadline:
                    raise
                await self.client.wait_connected(1.0)

    async def publish_raw(self, payload: bytes) -> None:
        await self.client.publish("sms/submit", payload)

    async def publish_many(self, jobs: Iterable[dict[str, Any]], concurrency: int = 200) -> int:
        """Publish in order of the iterable, ``concurrency`` awaiting their PUBACK at once."""
        pending: set[asyncio.Task[None]] = set()
        count = 0
        for job in jobs:
            if len(pending) >= concurrency:
                done, pending = await asyncio.wait(pending, return_when="FIRST_COMPLETED")
                for task in done:
                    task.result()
            pending.add(asyncio.ensure_future(self.publish(job)))
            count += 1
        if pending:
            for task in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(task, BaseException):
                    raise task
        return count

    def final_of(self, job_id: str) -> set[str]:
        return set(self.finals.get(job_id, ()))

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float, what: str = "events"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    async def wait_final(self, job_ids: Iterable[str], timeout: float) -> None:
        ids = list(job_ids)
        missing = [j for j in ids if j not in self.finals]

        def done() -> bool:
            nonlocal missing
            missing = [j for j in missing if j not in self.finals]
            return not missing

        try:
            await self.wait_for(done, timeout, "final statuses")
        except AssertionError:
            raise AssertionError(
                f"{len(missing)} of {len(ids)} jobs without a final status, e.g. {missing[:5]}"
            ) from None


# ----------------------------------------------------------------------------- the ledger


def job(prefix: str, i: int, **extra: Any) -> dict[str, Any]:
    """A job whose text names it, so the SMSC's record says which job each submit was."""
    return {"id": f"{prefix}-{i:06d}", "to": "0981234567", "text": f"{prefix} job {i:06d}", **extra}


def job_of_text(text: str) -> str | None:
    m = re.fullmatch(r"(\S+) job (\d{6})", text)
    return f"{m.group(1)}-{m.group(2)}" if m else None


@dataclass
class Ledger:
    """What a run did, reconciled from the SMSC's record, the events and the store."""

    jobs: int = 0
    #: final status → jobs
    outcomes: Counter[str] = field(default_factory=Counter)
    #: error code of failed jobs → jobs
    failed_codes: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    conflicting: dict[str, set[str]] = field(default_factory=dict)
    duplicates_at_smsc: dict[str, int] = field(default_factory=dict)
    #: jobs whose final-status event came more than once (at-least-once, identical)
    repeated_events: int = 0
    submits: int = 0
    unanswered_submits: int = 0
    receipts_expected: int = 0
    receipts_lost: list[str] = field(default_factory=list)
    receipts_unmatched: int = 0
    #: unknown_outcome jobs whose submit_sm never reached the SMSC (armed, then killed)
    unknown_not_sent: int = 0
    #: unknown_outcome jobs the SMSC did accept (the response was lost with the process)
    unknown_sent: int = 0
    mo_sent: int = 0
    mo_lost: list[str] = field(default_factory=list)
    mo_duplicates: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "outcomes": dict(self.outcomes),
            "failed_codes": dict(self.failed_codes),
            "lost": len(self.lost),
            "conflicting": len(self.conflicting),
            "duplicates_at_smsc": len(self.duplicates_at_smsc),
            "repeated_final_events": self.repeated_events,
            "submits": self.submits,
            "unanswered_submits": self.unanswered_submits,
            "receipts_expected": self.receipts_expected,
            "receipts_lost": len(self.receipts_lost),
            "receipts_unmatched": self.receipts_unmatched,
            "unknown_not_sent": self.unknown_not_sent,
            "unknown_sent": self.unknown_sent,
            "mo_sent": self.mo_sent,
            "mo_lost": len(self.mo_lost),
            "mo_duplicates": self.mo_duplicates,
        }

    def assert_clean(self, *, allow_unknown: bool = True) -> None:
        """Nothing lost, no job with two different final statuses, no duplicate at the
        SMSC, every receipt and MO published."""
        problems = []
        if self.lost:
            problems.append(f"{len(self.lost)} jobs lost, e.g. {self.lost[:5]}")
        if self.conflicting:
            sample_ = dict(list(self.conflicting.items())[:5])
            problems.append(f"{len(self.conflicting)} jobs with different finals: {sample_}")
        if self.duplicates_at_smsc:
            sample_d = dict(list(self.duplicates_at_smsc.items())[:5])
            problems.append(f"{len(self.duplicates_at_smsc)} jobs sent twice: {sample_d}")
        if self.receipts_lost:
            problems.append(f"{len(self.receipts_lost)} receipts lost: {self.receipts_lost[:5]}")
        if self.mo_lost:
            problems.append(f"{len(self.mo_lost)} MO lost: {self.mo_lost[:5]}")
        if not allow_unknown and self.failed_codes.get("unknown_outcome"):
            problems.append(f"{self.failed_codes['unknown_outcome']} unknown outcomes")
        assert not problems, "; ".join(problems) + f"\n{self.summary()}"


def reconcile(
    job_ids: Iterable[str],
    observer: Observer,
    submits: list[Submit],
    *,
    mo_texts: Iterable[str] = (),
    store: StoreView | None = None,
) -> Ledger:
    """Check the run: each job's finals, the SMSC's record, receipts, MO (see Ledger)."""
    ledger = Ledger()
    ids = list(job_ids)
    ledger.jobs = len(ids)
    sent: Counter[str] = Counter()
    answered: dict[str, list[str]] = defaultdict(list)
    for submit in submits:
        ledger.submits += 1
        owner = job_of_text(submit.text)
        if owner is None:
            continue
        sent[owner] += 1
        if submit.answered and submit.wants_receipt:
            answered[owner].append(submit.message_id)
        if not submit.answered:
            ledger.unanswered_submits += 1
    ledger.duplicates_at_smsc = {j: n for j, n in sent.items() if n > 1}
    for job_id in ids:
        finals = observer.finals.get(job_id)
        if not finals:
            ledger.lost.append(job_id)
            continue
        if len(finals) > 1:
            ledger.conflicting[job_id] = set(finals)
            continue
        (status,) = finals
        ledger.outcomes[status] += 1
        if sum(finals.values()) > 1:
            ledger.repeated_events += 1
        if store is not None:
            row = store.jobs.get(job_id)
            if row is None or row[1] != status:
                ledger.conflicting[job_id] = {status, f"store:{row}"}
        if status == "failed":
            code = next((s.code for s in observer.statuses[job_id] if s.status == "failed"), None)
            ledger.failed_codes[code or "?"] += 1
            if code == "unknown_outcome":
                if sent.get(job_id):
                    ledger.unknown_sent += 1
                else:
                    ledger.unknown_not_sent += 1
        # Receipts: every id the SMSC answered with produced a receipt (the simulator
        # sends one per answered submit that asked for it); it must be on MQTT, either in
        # the job's delivered/undelivered event or as an unmatched receipt.
        for message_id in answered.get(job_id, ()):
            ledger.receipts_expected += 1
            in_event = any(
                message_id in s.message_ids
                for s in observer.statuses[job_id]
                if s.status in ("delivered", "undelivered", "expired")
            )
            if in_event:
                continue
            if observer.unmatched.get(message_id):
                ledger.receipts_unmatched += 1
                continue
            ledger.receipts_lost.append(f"{job_id}:{message_id}")
    mo = list(mo_texts)
    ledger.mo_sent = len(mo)
    for text in mo:
        n = observer.inbound.get(text, 0)
        if n == 0:
            ledger.mo_lost.append(text)
        elif n > 1:
            ledger.mo_duplicates += 1
    return ledger


def assert_settled(
    ids: Iterable[str],
    obs: Observer,
    submits: list[Submit],
    *,
    scenario: str,
    report: Callable[..., None] | None,
    store: StoreView | None = None,
    outbox: int | None = None,
    mo_texts: Iterable[str] = (),
    allow_unknown: bool = True,
    delivered: int | None = None,
    **figures: Any,
) -> Ledger:
    """The end of a fault-injection run, once the gateway has stopped: reconcile the jobs
    with the SMSC's record and the store (``store``: its view, SQLite), record the figures
    (``report``, the reliability suite's fixture; None: printed), then assert it clean
    (:meth:`Ledger.assert_clean`), every job ``delivered`` when that count is given, and
    the outbox empty (``store.outbox``, or ``outbox`` counted by the caller; not checked
    when neither is known). The ledger, for the scenario's own assertions."""
    ledger = reconcile(ids, obs, submits, mo_texts=mo_texts, store=store)
    if store is not None:
        outbox = store.outbox
    if outbox is not None:
        figures["outbox_left"] = outbox
    (report or _print_figures)(scenario=scenario, **figures, **ledger.summary())
    ledger.assert_clean(allow_unknown=allow_unknown)
    if delivered is not None:
        assert ledger.outcomes == {"delivered": delivered}
    if outbox is not None:
        assert outbox == 0
    return ledger


def _print_figures(**figures: Any) -> None:
    print(figures)


# ----------------------------------------------------------------------------- one run


@dataclass
class Run:
    """A broker's worth of parts for one scenario: SMSC, gateway and observer, started."""

    sim: SimProc
    gw: GatewayProc
    obs: Observer
    stats: dict[str, Any] = field(default_factory=dict)
    submits: list[Submit] = field(default_factory=list)
    store: StoreView | None = None

    async def finish(
        self, ids: Iterable[str], *, mo_texts: Iterable[str] = (), timeout: float = 60.0
    ) -> Ledger:
        """Wait for every job's final status and a quiet SMSC, stop the gateway (SIGTERM),
        read the SMSC's record and the store, and reconcile."""
        ids = list(ids)
        await self.obs.wait_final(ids, timeout=timeout)
        await self.sim.wait_quiet(timeout=timeout)
        assert await self.gw.terminate() == 0
        await asyncio.sleep(0.3)
        self.stats = await self.sim.astats()
        self.submits = await self.sim.asubmits()
        self.store = self.gw.read_store()
        return reconcile(ids, self.obs, self.submits, mo_texts=mo_texts, store=self.store)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    broker: Mosquitto,
    *,
    sim: dict[str, Any] | None = None,
    carrier: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
    keep_events: bool = True,
) -> Any:
    """Start ``smppgw sim``, ``smppgw run`` and an observer; stop them all at the end."""
    sim_proc = SimProc(tmp_path / "sim", **(sim or {})).start()
    gw = GatewayProc(
        tmp_path / "gw", broker, [carrier_entry(sim_proc, **(carrier or {}))], **(gateway or {})
    )
    try:
        async with Observer(broker, keep=keep_events) as obs:
            await gw.start()
            yield Run(sim_proc, gw, obs)
    finally:
        gw.close()
        sim_proc.stop()
