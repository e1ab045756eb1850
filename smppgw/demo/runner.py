"""``smppgw demo`` from start to finish: set up, send the jobs, watch, check, tear down.

The demo runs the real thing, not an imitation: the gateway is ``smppgw run`` in its own
process with a config derived from conf/demo.yaml, the SMSCs are ``smppgw sim`` in
another process (so the demo's own work cannot disturb the SMSC's view of the TPS), and
the jobs go through a real MQTT broker. Whatever happens (success, failure, Ctrl-C) the
teardown runs in reverse order of the set-up: the gateway gets SIGTERM and drains before
the SMSCs and the broker it talks to go away.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from smppgw.demo import report
from smppgw.demo.procs import http_json, http_text, smppgw_child
from smppgw.demo.scenario import (
    COD_CUSTOMER,
    COD_REPLY,
    COD_SHORT_CODE,
    OPTOUT_CUSTOMER,
    OPTOUT_TEXT,
    Scenario,
    build,
)
from smppgw.demo.stack import GatewayPlan, SimPlan, StackError, find_conf, plan_gateway, plan_sims
from smppgw.demo.watch import Watcher, clock, count_finals
from smppgw.mqtt import MqttError
from smppgw.mqtt.broker import BrokerError, Mosquitto, reachable
from smppgw.procs import Child, ChildError, fresh_ports

DEFAULT_BROKER = ("127.0.0.1", 1883)
#: Seconds between progress lines while something slow is going on.
PROGRESS_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class Options:
    #: (host, port), "own" (always start a private mosquitto) or None (1883, else own).
    broker: tuple[str, int] | str | None = None
    quick: bool = False
    keep_running: bool = False
    burst: int | None = None
    gateway_config: Path | None = None
    sim_config: Path | None = None
    timeout: float | None = None

    @property
    def burst_size(self) -> int:
        if self.burst is not None:
            return self.burst
        return 40 if self.quick else 200


class Demo:
    def __init__(self, options: Options, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.t0 = time.monotonic()
        #: Name of the signal that interrupted the run, once one did.
        self.interrupted: str | None = None
        self.broker: tuple[str, int] = DEFAULT_BROKER
        self.own_broker: Mosquitto | None = None
        self.sim: Child | None = None
        self.gateway: Child | None = None
        self.watcher: Watcher | None = None
        #: The watcher's MQTT connection, closed first at teardown.
        self._watching = contextlib.AsyncExitStack()
        self.sims: SimPlan | None = None
        self.plan: GatewayPlan | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="smppgw-demo-"))
        self.readyz = ""
        self._log_shown = False
        #: Things worth telling in the summary that are not checks.
        self.notes: list[str] = []

    def say(self, line: str = "") -> None:
        # A reader that went away (``smppgw demo | head``) must not stop the teardown.
        with contextlib.suppress(BrokenPipeError, ValueError):
            print(line, file=self.out, flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # ------------------------------------------------------------------ the whole run

    async def run(self) -> int:
        code = 1
        keep_logs = False
        try:
            code = await self._run()
            keep_logs = code != 0
            if self.options.keep_running and code in (0, 1):
                self._print_playground()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
                self._uncancel()
                self.say()
        except asyncio.CancelledError:
            if self.interrupted is None:
                raise
            self._uncancel()
            self.say(f"\ninterrupted ({self.interrupted}): stopping everything")
            code = 130
        except (BrokerError, StackError, ChildError, MqttError, OSError) as exc:
            self.say(f"\ndemo failed: {exc}")
            code, keep_logs = 2, True
            self._log_shown = isinstance(exc, ChildError)
        finally:
            await self._teardown()
            if keep_logs:
                self.say(f"logs and configs kept in {self.workdir}")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    def _uncancel(self) -> None:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            task.uncancel()

    async def _run(self) -> int:
        options = self.options
        tag = secrets.token_hex(2)
        scenario = build(tag, options.burst_size)
        self.say(
            "smppgw demo: three simulated carrier SMSCs, an MQTT broker, the gateway, "
            "and a shop's traffic"
        )
        self._start_broker()
        await self._start_sims()
        await self._start_gateway()
        assert self.plan is not None and self.sims is not None
        burst_ids = {job.id for job in scenario.burst}
        self.watcher = await self._watching.enter_async_context(
            Watcher(self.broker, self.plan.config.mqtt, self.out, quiet=burst_ids.__contains__)
        )
        await self._publish(scenario)
        mo_sent_at = await self._wait(scenario)
        evidence = await self._gather(scenario, mo_sent_at)
        results = report.checks(scenario, evidence)
        for line in report.summary(scenario, evidence, results, next_steps=self._next_steps()):
            self.say(line)
        return 0 if all(check.ok for check in results) else 1

    # ------------------------------------------------------------------ set-up

    def _start_broker(self) -> None:
        if isinstance(self.options.broker, tuple):
            host, port = self.options.broker
            if not reachable(host, port):
                raise BrokerError(f"no MQTT broker answers at {host}:{port} (--broker)")
            self.broker = (host, port)
            self.say(f"broker     {host}:{port} (--broker)")
            return
        if self.options.broker is None and reachable(*DEFAULT_BROKER):
            self.broker = DEFAULT_BROKER
            self.say("broker     local mosquitto at 127.0.0.1:1883 (topics under demo/)")
            return
        try:  # no state kept: persistence off, its temp dir removed at the end
            broker = Mosquitto(persistence=False, own_session=True)
        except BrokerError as exc:
            raise BrokerError(f"{exc}, or pass --broker HOST:PORT") from None
        self.own_broker = broker
        broker.start()
        self.broker = (broker.host, broker.port)
        why = "--broker own" if self.options.broker == "own" else "none at 127.0.0.1:1883"
        self.say(
            f"broker     {why}: started mosquitto on {broker.host}:{broker.port} "
            "(max_queued_messages 0, no persistence)"
        )

    async def _start_sims(self) -> None:
        # A port planned free can be taken before the simulator binds it (another
        # process's outgoing connection draws from the same ephemeral range): plan anew.
        for attempt in fresh_ports():
            if attempt.number > 1:
                assert self.sim is not None
                await self.sim.astop()
                lost = attempt.number - 1
                self.say(f"simulator  a planned port was taken meanwhile; new ports ({lost})")
            with attempt:
                await self._start_sims_once()

    async def _start_sims_once(self) -> None:
        source = self.options.sim_config or find_conf("sim-demo.yaml")
        sims = self.sims = plan_sims(source, self.workdir)
        child = self.sim = smppgw_child(
            "simulator", ["sim", "--config", str(sims.path)], self.workdir / "sim.log"
        )
        deadline = time.monotonic() + 10
        waiting = set(sims.smscs)
        while waiting:
            child.check()
            for name in list(waiting):
                with contextlib.suppress(OSError):
                    status, _ = await http_json(
                        "GET", sims.control_url(name, "/healthz"), timeout=1
                    )
                    if status == 200:
                        waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                raise ChildError(f"simulator did not start:\n{child.log_tail()}")
            if waiting:
                await asyncio.sleep(0.1)
        for name, config in sims.smscs.items():
            mix = ", ".join(
                f"{state} {weight / sum(config.receipt_mix.values()):.0%}"
                for state, weight in config.receipt_mix.items()
            )
            tps = {a.tps for a in config.accounts}
            limit = "" if tps == {None} else f", {'/'.join(f'{t:g}' for t in tps if t)} TPS"
            self.say(
                f"smsc       {name:<9} 127.0.0.1:{sims.ports[name]}, control "
                f"http://127.0.0.1:{sims.controls[name]} (receipts after "
                f"{config.receipt_delay:g} s: {mix}{limit})"
            )

    async def _start_gateway(self) -> None:
        assert self.sims is not None
        source = self.options.gateway_config or find_conf("demo.yaml")
        plan = self.plan = plan_gateway(source, self.workdir, self.sims, self.broker)
        started = time.monotonic()
        child = self.gateway = smppgw_child(
            "gateway", ["run", "--config", str(plan.path)], self.workdir / "gateway.log"
        )
        self.say(f"gateway    smppgw run --config {plan.path} (pid {child.pid})")
        last_note = started
        while True:
            try:
                child.check()
            except ChildError as exc:
                if self.own_broker is None and "refused the connection" in str(exc):
                    host, port = self.broker
                    raise ChildError(
                        f"{exc}\nthe broker at {host}:{port} refused the gateway; "
                        "--broker own starts a private mosquitto"
                    ) from None
                raise
            ready, reasons = await self._gateway_ready(plan, child)
            if ready:
                break
            now = time.monotonic()
            if now - started > 20:
                hint = ""
                if any(r.startswith("not subscribed") for r in reasons):
                    host, port = self.broker
                    hint = (
                        f"\n(does the broker at {host}:{port} let anonymous clients in? "
                        "--broker own starts a private one)"
                    )
                raise ChildError(
                    f"gateway not ready after 20 s: {'; '.join(reasons)}{hint}\n{child.log_tail()}"
                )
            if now - last_note > 2:
                last_note = now
                self.say(f"           … waiting for the gateway: {'; '.join(reasons)}")
            await asyncio.sleep(0.1)
        carriers = ", ".join(c.name for c in plan.config.carriers)
        self.say(
            f"gateway    ready after {time.monotonic() - started:.1f} s: bound to {carriers}; "
            f"metrics {plan.metrics_url}/metrics"
        )
        if self.readyz != "ok":
            self.notes.append(f"the gateway's /readyz disagreed when it was ready: {self.readyz}")
            self.say(f"           note: /readyz answers {self.readyz}")

    async def _gateway_ready(self, plan: GatewayPlan, child: Child) -> tuple[bool, list[str]]:
        """Ready to take jobs: subscribed to the submit topic and bound to every SMSC.

        Checked from the outside: the subscription from the gateway's log (a job published
        before it would be dropped by the broker, and /readyz does not cover it), the binds
        from each simulator's /stats. /readyz is read too, and a disagreement is reported.
        """
        assert self.sims is not None
        reasons: list[str] = []
        log = ""
        with contextlib.suppress(OSError):
            log = child.log_path.read_text(errors="replace")
        if "mqtt.subscribed" not in log:
            reasons.append(f"not subscribed to {plan.config.mqtt.submit_topic} yet")
        for name in self.sims.smscs:
            try:
                _, stats = await http_json("GET", self.sims.control_url(name, "/stats"), timeout=1)
            except OSError as exc:
                reasons.append(f"{name} simulator: {exc}")
                continue
            if not isinstance(stats, dict) or not stats.get("binds"):
                reasons.append(f"{name}: no bind yet")
        self.readyz = "no answer"
        with contextlib.suppress(OSError):
            status, body = await http_json("GET", plan.metrics_url + "/readyz", timeout=1)
            if status == 200:
                self.readyz = "ok"
            else:
                why = body.get("reasons") if isinstance(body, dict) else body
                self.readyz = f"{status} {why}"
        return not reasons, reasons

    # ------------------------------------------------------------------ the traffic

    async def _publish(self, scenario: Scenario) -> None:
        watcher = self.watcher
        assert watcher is not None
        topic = watcher.topics.submit_topic
        self.say(
            f"\njobs       publishing to {topic} (QoS 1), events from "
            f"{watcher.topics.status_topic}/<id>:"
        )
        for job in scenario.showcase:
            self.say(f"  → {job.id:<20} {job.kind} to {job.to}")
        self.say(
            f"  → {len(scenario.burst)} × remind-NNN-{scenario.burst[0].id.rsplit('-', 1)[1]}"
            f"  payment reminders (low) to {scenario.burst_carrier}, and {scenario.otp.id} "
            f"(high) published after #{scenario.otp_after}"
        )
        self.say()
        for job in scenario.showcase:
            await watcher.publish(job.payload())
        await self._mo(OPTOUT_CUSTOMER, OPTOUT_TEXT, "opts out of promotions")
        for n, job in enumerate(scenario.burst):
            if n == scenario.otp_after:
                await watcher.publish(scenario.otp.payload())
            await watcher.publish(job.payload())

    async def _wait(self, scenario: Scenario) -> float | None:
        """Until every job is final and the MO came back (or the time is up); sends the
        customer's MO reply once the COD request is delivered. Returns when the MO was sent."""
        watcher, sims = self.watcher, self.sims
        assert watcher is not None and sims is not None
        record = watcher.record
        jobs = scenario.all_jobs
        burst_ids = [job.id for job in scenario.burst]
        timeout = self.options.timeout or (len(scenario.burst) / 20 * 1.5 + 10)
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        mo_sent_at: float | None = None

        def mo_seen() -> bool:
            """The reply came back on the inbound topic and on the job's reply topic."""
            return bool(record.replies) and any(
                s.body.get("from") == COD_CUSTOMER for s in record.inbound
            )

        optout_published = False
        while True:
            if mo_sent_at is None and record.final(scenario.cod.id) is not None:
                mo_sent_at = time.time()
                await self._mo(COD_CUSTOMER, COD_REPLY, "replies")
            opted_out = any(s.body.get("number") == OPTOUT_CUSTOMER for s in record.consent)
            if not optout_published and opted_out:
                optout_published = True
                job = scenario.optout
                self.say(f"{clock(time.time())}  → {job.id}: a promotion to {job.to}")
                await watcher.publish(job.payload())
            pending = [job.id for job in jobs if record.final(job.id) is None]
            if not pending and (mo_sent_at is not None and mo_seen()):
                break
            now = time.monotonic()
            if now > deadline:
                self.say(
                    f"           timed out after {timeout:.0f} s; not final: "
                    f"{', '.join(pending[:5])}{' …' if len(pending) > 5 else ''}"
                )
                break
            if now - last_progress >= PROGRESS_EVERY:
                last_progress = now
                self._progress(record, burst_ids, pending, mo_sent_at is not None and mo_seen())
            await watcher.wait_change(0.25)
        counts = count_finals(record, burst_ids)
        self.say(f"{clock(time.time())}  … burst done: {self._burst_text(counts, len(burst_ids))}")
        return mo_sent_at

    async def _mo(self, customer: str, text: str, verb: str) -> None:
        """The customer texts ``text`` to the short code (viettel's simulator sends it)."""
        assert self.sims is not None
        self.say(
            f"{clock(time.time())}  → MO: the customer {customer} {verb}: {text!r} to "
            f"{COD_SHORT_CODE} (POST /mo on viettel's simulator)"
        )
        status, body = await http_json(
            "POST",
            self.sims.control_url("viettel", "/mo"),
            {"from": customer, "to": COD_SHORT_CODE, "text": text},
        )
        if status != 202:
            self.say(f"           MO refused by the simulator: {status} {body}")

    @staticmethod
    def _burst_text(counts: dict[str, int], total: int) -> str:
        finals = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if k != "submitted")
        return f"{counts['submitted']}/{total} submitted" + (f", {finals}" if finals else "")

    def _progress(
        self, record: Any, burst_ids: list[str], pending: list[str], mo_done: bool
    ) -> None:
        counts = count_finals(record, burst_ids)
        line = f"{clock(time.time())}  … burst: {self._burst_text(counts, len(burst_ids))}"
        others = [j for j in pending if j not in set(burst_ids)]
        if others:
            line += f"; waiting for {', '.join(others)}"
        if not mo_done:
            line += "; MO reply pending"
        self.say(line)

    # ------------------------------------------------------------------ evidence

    async def _gather(self, scenario: Scenario, mo_sent_at: float | None) -> report.Evidence:
        sims, plan, watcher = self.sims, self.plan, self.watcher
        assert sims is not None and plan is not None and watcher is not None
        submits: dict[str, list[dict[str, Any]]] = {}
        stats: dict[str, dict[str, Any]] = {}
        notes = list(self.notes)
        for name in sims.smscs:
            _, body = await http_json(
                "GET", sims.control_url(name, "/submits?since=0&limit=100000")
            )
            submits[name] = list(body.get("submits", [])) if isinstance(body, dict) else []
            _, body = await http_json("GET", sims.control_url(name, "/stats"))
            stats[name] = body if isinstance(body, dict) else {}
        try:
            metrics = report.sum_metrics(await http_text(plan.metrics_url + "/metrics"))
        except (OSError, ValueError) as exc:
            metrics = {}
            notes.append(f"gateway /metrics unreadable: {exc}")
        tps = {
            name: next((a.tps for a in config.accounts), None)
            for name, config in sims.smscs.items()
        }
        return report.Evidence(
            watcher.record, submits, stats, metrics, tps, mo_sent_at, notes=notes
        )

    def _next_steps(self) -> list[str]:
        host, port = self.broker
        if self.options.keep_running:
            return ["everything stays up: see below"]
        steps = [
            "smppgw demo --keep-running        leave it all up and play with mosquitto_pub",
            "smppgw sim --config conf/sim-demo.yaml & smppgw run --config conf/demo.yaml"
            "   the same, by hand",
        ]
        if self.own_broker is None:
            steps.append(f"mosquitto_sub -h {host} -p {port} -t 'demo/sms/#' -v   watch the topics")
        if self.plan is not None:
            steps.append(f"while it runs, metrics are at {self.plan.metrics_url}/metrics")
        return steps

    def _print_playground(self) -> None:
        host, port = self.broker
        assert self.plan is not None and self.sims is not None
        topics = self.plan.config.mqtt
        control = self.sims.control_url("viettel", "")
        socket = self.plan.config.ctl.socket
        ctl = f"  smppgw ctl --socket {socket} status\n" if socket else ""
        self.say(
            "\neverything is still running (Ctrl-C stops it). In another terminal:\n"
            f"  mosquitto_sub -h {host} -p {port} -t 'demo/sms/#' -v\n"
            f"  mosquitto_pub -h {host} -p {port} -q 1 -t {topics.submit_topic} "
            '-m \'{"id":"try-1","to":"0981234567","text":"Xin chào"}\'\n'
            f"  curl -s -XPOST {control}/mo -d "
            f'\'{{"from":"{COD_CUSTOMER}","to":"{COD_SHORT_CODE}","text":"2"}}\'\n'
            f"  curl -s {self.plan.metrics_url}/metrics | grep ^smppgw_\n"
            f"  curl -s {self.plan.metrics_url}/readyz\n"
            f"{ctl}"
            f"events keep printing here; gateway log: {self.workdir / 'gateway.log'}"
        )

    # ------------------------------------------------------------------ teardown

    async def _teardown(self) -> None:
        stopped: list[str] = []
        with contextlib.suppress(Exception):
            await self._watching.aclose()
        self.watcher = None
        if self.gateway is not None:
            code = await self.gateway.astop()
            stopped.append(f"gateway (SIGTERM, drained, exit {code})")
            if code not in (0, None) and not self._log_shown:
                self.say(f"gateway log tail:\n{self.gateway.log_tail()}")
            self.gateway = None
        if self.sim is not None:
            code = await self.sim.astop()
            stopped.append(f"simulator (exit {code})")
            self.sim = None
        if self.own_broker is not None:
            await asyncio.to_thread(self.own_broker.close)
            stopped.append("mosquitto")
            self.own_broker = None
        if stopped:
            self.say(f"stopped: {', '.join(stopped)} after {self.elapsed():.1f} s")
