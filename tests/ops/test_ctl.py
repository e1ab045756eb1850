"""``smppgw ctl`` against a real gateway (in-process), a real mosquitto and the simulator:
status, pause/resume at the SMSC, jobs cancel/requeue, reload, who may ask, and what it
costs a gateway under load."""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from smppgw.commands.ctl import ask, render
from smppgw.config.loader import load_config
from smppgw.gateway import Gateway
from smppgw.sim.server import Simulator
from smppgw.store import Store, StoredJob

from gateway.harness import Observer, gateway_config, running, sim_config
from support.broker import Mosquitto

_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")
NOBODY = 65534
DAEMON = 1  # Debian's "daemon" user: an uid to allow that is neither root nor nobody


@pytest.fixture
def sock_dir() -> AsyncIterator[Path]:
    """A directory other uids can reach (pytest's tmp_path is 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="smppgw-ctl-"))
    directory.chmod(0o755)
    yield directory
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()


@pytest.fixture
async def viettel() -> AsyncIterator[Simulator]:
    async with Simulator(sim_config(receipt_delay=0.05, name="viettel")) as sim:
        yield sim


async def ctl(path: Path, command: str, **args: Any) -> dict[str, Any]:
    """One request through the real client code, off the event loop the gateway runs on."""
    return await asyncio.to_thread(ask, str(path), {"command": command, "args": args}, 10.0)


async def until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _config(tmp_path: Path, mosquitto: Mosquitto, sim: Simulator, sock: Path, **top: Any) -> Any:
    return gateway_config(tmp_path, mosquitto, {"viettel": sim}, ctl={"socket": str(sock)}, **top)


async def test_status_pause_resume_at_the_smsc(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, sock_dir: Path
) -> None:
    sock = sock_dir / "ctl.sock"
    async with running(_config(tmp_path, mosquitto, viettel, sock)) as gw:
        assert (sock.stat().st_mode & 0o777) == 0o600
        status = await ctl(sock, "status")
        assert status["ok"], status
        carrier = status["result"]["carriers"]["viettel"]
        assert carrier["binds_up"] == carrier["binds_total"] == 1
        assert carrier["paused"] is False and carrier["tps_limit"] == 200
        assert carrier["queued"] == {"high": 0, "normal": 0, "low": 0}
        for key in ("held", "held_total", "outbox", "dead_events", "mqtt_connected"):
            assert key in status["result"], key
        assert status["result"]["mqtt_connected"] is True
        assert status["result"]["mqtt_connections"] == {"jobs": True, "events": True}
        print(render("status", status["result"]))
        assert "mqtt connected" in render("status", status["result"])
        events_down = {"jobs": True, "events": False}
        down = {**status["result"], "mqtt_connected": False, "mqtt_connections": events_down}
        assert "mqtt NOT connected (events)" in render("status", down)

        paused = await ctl(sock, "pause", carrier="viettel")
        assert paused == {
            "ok": True,
            "result": {"carrier": "viettel", "paused": True, "changed": True},
        }
        before = viettel.stats()
        async with Observer(mosquitto) as obs:
            ids = [f"p-{i}" for i in range(20)]
            for job_id in ids:
                await obs.submit(id=job_id, to="0981234567", text="paused")
            await until(
                lambda: gw.store._depths.get(("viettel", 1), 0) == 20, what="20 queued jobs"
            )
            await asyncio.sleep(1.0)  # nothing may reach the SMSC meanwhile
            during = viettel.stats()
            assert during["submits_accepted"] == before["submits_accepted"]
            assert during["binds"] == before["binds"] == 1
            assert during["binds_total"] == before["binds_total"]  # no rebind
            status = (await ctl(sock, "status"))["result"]["carriers"]["viettel"]
            assert status["paused"] and status["binds_up"] == 1
            assert status["queued"]["normal"] == 20
            readiness = gw.health.readiness()
            assert readiness.ok and readiness.details["paused"] == ["viettel"]

            assert (await ctl(sock, "resume", carrier="viettel"))["ok"]
            await obs.wait_final(ids, timeout=15)
        assert viettel.stats()["submits_accepted"] == before["submits_accepted"] + 20
        assert viettel.stats()["binds_total"] == before["binds_total"]
        assert gw.health.readiness().details["paused"] == []
        unknown = await ctl(sock, "pause", carrier="nope")
        assert not unknown["ok"] and "no carrier 'nope'" in unknown["error"]
    assert not sock.exists()  # removed at stop


async def test_cancel_a_queued_job_publishes_cancelled(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, sock_dir: Path
) -> None:
    sock = sock_dir / "ctl.sock"
    async with running(_config(tmp_path, mosquitto, viettel, sock)) as gw:
        async with Observer(mosquitto) as obs:
            await ctl(sock, "pause", carrier="viettel")
            await obs.submit(id="c-1", to="0981234567", text="cancel me")
            await obs.submit(id="c-2", to="0981234567", text="send me")
            await until(lambda: gw.store._depths.get(("viettel", 1), 0) == 2, what="queued")
            listed = await ctl(sock, "jobs.list", carrier="viettel", state="queued")
            assert [j["job_id"] for j in listed["result"]] == ["c-2", "c-1"]
            answer = await ctl(sock, "jobs.cancel", id="c-1")
            assert answer["ok"], answer
            assert answer["result"]["status"] == "cancelled"
            await obs.wait_for(lambda: bool(obs.statuses("c-1")))
            assert [e["status"] for e in obs.statuses("c-1")] == ["cancelled"]
            again = await ctl(sock, "jobs.cancel", id="c-1")
            assert not again["ok"] and "is cancelled" in again["error"]
            assert not (await ctl(sock, "jobs.cancel", id="missing"))["ok"]
            await ctl(sock, "resume", carrier="viettel")
            await obs.wait_final(["c-2"])
            late = await ctl(sock, "jobs.cancel", id="c-2")
            assert not late["ok"] and "only a job still queued" in late["error"], late
        shown = await ctl(sock, "jobs.show", id="c-1")
        assert shown["result"]["status"] == "cancelled" and shown["result"]["lane"] == "normal"
    destinations = [s.pdu.short_message for s in viettel.submits]
    assert b"cancel me" not in destinations and b"send me" in destinations


async def test_a_scheduled_job_is_listed_shown_and_cancelled(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, sock_dir: Path
) -> None:
    sock = sock_dir / "ctl.sock"
    async with running(_config(tmp_path, mosquitto, viettel, sock)) as gw:
        async with Observer(mosquitto) as obs:
            due = int(time.time()) + 3600
            await obs.submit(id="h-1", to="0981234567", text="later", send_at=due)
            await until(lambda: gw.store.held_counts() == {"send_at": 1}, what="held")
            assert (await ctl(sock, "status"))["result"]["scheduled"] == {"send_at": 1}
            listed = await ctl(sock, "jobs.list", state="held")
            (shown,) = listed["result"]
            assert shown["job_id"] == "h-1" and shown["hold_reason"] == "send_at"
            assert shown["send_at"] == datetime.fromtimestamp(due, UTC).isoformat(
                timespec="milliseconds"
            )
            answer = await ctl(sock, "jobs.cancel", id="h-1")
            assert answer["ok"] and answer["result"]["status"] == "cancelled", answer
            await obs.wait_for(lambda: len(obs.statuses("h-1")) == 2)
            assert [e["status"] for e in obs.statuses("h-1")] == ["scheduled", "cancelled"]
            assert gw.store.held_counts() == {}


async def test_requeue_only_confirmed_unknown_outcomes(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, sock_dir: Path
) -> None:
    """A job a previous run left in flight ends failed/unknown_outcome at start; with
    --confirm-never-sent (and its text kept) it goes back to its lane and is delivered."""
    db = tmp_path / "gw.db"
    async with Store(str(db), keep_text=True) as store:
        await store.add_jobs([StoredJob("u-1", "viettel", 1, "84981234567", "lost in flight")])
        await store.claim("viettel", 1, time.time())
        await store.mark_in_flight(["u-1"])
    sock = sock_dir / "ctl.sock"
    config = _config(tmp_path, mosquitto, viettel, sock, store={"path": str(db), "keep_text": True})
    async with Observer(mosquitto) as obs, running(config):
        shown = (await ctl(sock, "jobs.show", id="u-1"))["result"]
        assert (shown["status"], shown["error_code"]) == ("failed", "unknown_outcome")
        refused = await ctl(sock, "jobs.requeue", id="u-1")
        assert not refused["ok"] and "--confirm-never-sent" in refused["error"]
        assert viettel.stats()["submits_accepted"] == 0
        await obs.submit(id="d-1", to="0981234567", text="delivered one")
        await obs.wait_final(["d-1"])
        other = await ctl(sock, "jobs.requeue", id="d-1", confirm_never_sent=True)
        assert (
            not other["ok"]
            and "only a job that ended failed with unknown_outcome" in (other["error"])
        )
        done = await ctl(sock, "jobs.requeue", id="u-1", confirm_never_sent=True)
        assert done["ok"], done
        await obs.wait_for(lambda: any(e["status"] == "delivered" for e in obs.statuses("u-1")))
    assert [s.pdu.short_message for s in viettel.submits].count(b"lost in flight") == 1


async def test_requeue_refused_when_the_text_was_not_kept(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, sock_dir: Path
) -> None:
    db = tmp_path / "gw.db"
    async with Store(str(db)) as store:
        await store.add_jobs([StoredJob("u-2", "viettel", 1, "84981234567", "gone")])
        await store.claim("viettel", 1, time.time())
        await store.mark_in_flight(["u-2"])
    sock = sock_dir / "ctl.sock"
    async with running(_config(tmp_path, mosquitto, viettel, sock)):
        answer = await ctl(sock, "jobs.requeue", id="u-2", confirm_never_sent=True)
        assert not answer["ok"] and "store.keep_text is false" in answer["error"]


async def test_reload_through_ctl(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, sock_dir: Path
) -> None:
    sock = sock_dir / "ctl.sock"
    doc: dict[str, Any] = {
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "gw-ctl-reload"},
        "store": {"path": str(tmp_path / "gw.db")},
        "metrics": {"listen": None},
        "log": {"level": "warning", "format": "console"},
        "ctl": {"socket": str(sock)},
        "carriers": [
            {
                "name": "viettel",
                "host": "127.0.0.1",
                "port": viettel.port,
                "system_id": "shop",
                "password": "secret",
                "tps": 50,
                "prefixes": ["8498"],
            }
        ],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(doc))
    gateway = Gateway(load_config(path), config_path=str(path))
    task = asyncio.create_task(gateway.run(install_signals=False))
    await asyncio.wait_for(gateway.started.wait(), 15)
    try:
        doc["carriers"][0]["tps"] = 25
        path.write_text(yaml.safe_dump(doc))
        answer = await ctl(sock, "reload")
        assert answer == {"ok": True, "result": {"reloaded": True, "carriers": ["viettel"]}}
        assert gateway.carriers["viettel"].config.tps == 25
        path.write_text("carriers: [")
        broken = await ctl(sock, "reload")
        assert not broken["ok"] and "refused" in broken["error"]
        assert gateway.carriers["viettel"].config.tps == 25
    finally:
        gateway.stop()
        await asyncio.wait_for(task, 30)


#: What ``smppgw.commands.ctl.ask`` does, in stdlib only: the child runs the system
#: python, since the test's interpreter (under /root) is out of reach of other uids.
_CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"connect_error": exc.__class__.__name__})); sys.exit()
try:
    s.sendall(b'{"command": "pause", "args": {"carrier": "viettel"}}\\n')
except BrokenPipeError:
    pass
print(s.makefile().readline().strip())
"""


async def _as_uid(uid: int, sock: Path) -> dict[str, Any]:
    """The client in a child process running as ``uid``."""
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/python3", "-I", "-c", _CLIENT, str(sock),
        user=uid, group=uid, cwd="/",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return json.loads(out)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another uid")
async def test_a_client_that_is_not_allowed_is_refused(
    tmp_path: Path, mosquitto: Mosquitto, viettel: Simulator, sock_dir: Path
) -> None:
    sock = sock_dir / "ctl.sock"
    # Owner-only by default: another uid cannot even connect.
    async with running(_config(tmp_path, mosquitto, viettel, sock)) as gw:
        assert await _as_uid(NOBODY, sock) == {"connect_error": "PermissionError"}
        assert "viettel" not in gw.paused
    # With allow_uids the file is 0666, so the peer check is what refuses nobody.
    config = _config(tmp_path, mosquitto, viettel, sock, client_id="gw-ctl-2")
    config = load_config_with(config, allow_uids=(DAEMON,))
    async with running(config) as gw:
        assert (sock.stat().st_mode & 0o777) == 0o666
        refused = await _as_uid(NOBODY, sock)
        assert refused == {"ok": False, "error": f"uid {NOBODY} is not allowed (ctl)"}
        assert "viettel" not in gw.paused
        refused_total = gw.metrics.ctl_requests.labels(result="refused")._value.get()
        assert refused_total == 1
        with capture_logs() as logs:
            allowed = await _as_uid(DAEMON, sock)
        assert allowed["ok"] and "viettel" in gw.paused
        said = [e for e in logs if e["event"] == "ctl_command"]
        assert said == [
            {
                "event": "ctl_command",
                "log_level": "info",
                "uid": DAEMON,
                "command": "pause",
                "args": {"carrier": "viettel"},
                "was_paused": False,
            }
        ], said


def load_config_with(config: Any, **ctl: Any) -> Any:
    from dataclasses import replace

    return replace(config, ctl=replace(config.ctl, **ctl))


LOAD_JOBS = 2500
STATUS_CALLS = 100


async def _flow(obs: Observer, sim: Simulator, prefix: str, during: Any = None) -> float:
    """Publish LOAD_JOBS jobs and return jobs/s until the SMSC accepted all of them;
    ``during`` runs meanwhile (the ctl calls)."""
    start_count = sim.stats()["submits_accepted"]
    started = time.monotonic()
    side = asyncio.create_task(during()) if during is not None else None
    for first in range(0, LOAD_JOBS, 250):
        await asyncio.gather(
            *(
                obs.submit(id=f"{prefix}-{i}", to="0981234567", text="load", dlr=False)
                for i in range(first, first + 250)
            )
        )
    await until(
        lambda: sim.stats()["submits_accepted"] - start_count >= LOAD_JOBS, 120, "load accepted"
    )
    elapsed = time.monotonic() - started
    if side is not None:
        await side
    return LOAD_JOBS / elapsed


#: The ctl client in a process of its own, as `smppgw ctl` runs: started before the load,
#: it waits for a line on stdin, then makes the calls and prints their latencies.
_STATUS_CLIENT = """
import json, sys, time
from smppgw.commands.ctl import ask
sock, calls = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
while sys.stdin.readline():
    latencies = []
    for _ in range(calls):
        began = time.perf_counter()
        answer = ask(sock, {"command": "status", "args": {}}, 10.0)
        latencies.append(time.perf_counter() - began)
        assert answer["ok"], answer
        time.sleep(0.005)
    print(json.dumps(latencies), flush=True)
"""


async def test_ctl_under_load_is_fast_and_costs_no_throughput(
    tmp_path: Path, mosquitto: Mosquitto, sock_dir: Path
) -> None:
    """12,500 jobs flow in five runs of 2,500 at an unthrottled carrier (the gateway,
    the simulator and the publisher share this one event loop, so it is CPU-bound): the
    second and fourth with 50 ``status`` calls each made meanwhile, the others without,
    interleaved so that drift between runs (the store grows: later runs are slower) and
    one run's noise average out. The calls come from a client process of its own, as `smppgw ctl`
    does (a client thread in this process took the GIL from the event loop it measures:
    77 % of the throughput in one CI run, level in others). Every call is answered, half
    of them in < 25 ms (the worst one is printed, not asserted: on two shared cores a
    stall of the whole machine lands on whichever call is open).

    What the calls cost the gateway is taken on its own first: the event loop's CPU while
    the client makes 50 calls to the idle gateway, less the same span without calls,
    under 3 ms a call (0.6-1.3 ms on a slow 2-vCPU VM), so 50 calls cost a run of ~1 s
    under ~15 %. The runs' throughput is held only to what a loop blocked by ctl would
    break, 60 % of the runs without (their median): wall-clock throughput also moves with
    the client process, mosquitto and the writer process taking turns on two cores (79 %
    in one CI run, and the loop's CPU a job +15-27 % in busy runs beside calls costing
    +4 %)."""
    sock = sock_dir / "ctl.sock"
    latencies: list[float] = []
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _STATUS_CLIENT,
        str(sock),
        str(STATUS_CALLS // 2),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert client.stdin is not None and client.stdout is not None
    client_in, client_out = client.stdin, client.stdout

    async def calls() -> list[float]:
        client_in.write(b"go\n")
        await client_in.drain()
        answered: list[float] = json.loads(await client_out.readline())
        return answered

    async def statuses() -> None:
        latencies.extend(await calls())

    try:
        assert await asyncio.wait_for(client_out.readline(), 30) == b"ready\n"
        async with Simulator(sim_config(name="viettel")) as sim:
            config = _config(tmp_path, mosquitto, sim, sock, carrier={"tps": 5000, "window": 100})
            async with running(config), Observer(mosquitto) as obs:
                await _flow(obs, sim, "warm")
                await asyncio.sleep(0.5)  # the warm run's events published
                cpu_started, wall_started = time.thread_time(), time.monotonic()
                alone = len(await calls())
                cpu_calls = time.thread_time() - cpu_started
                span = time.monotonic() - wall_started
                cpu_started = time.thread_time()
                await asyncio.sleep(span)
                cpu_idle = time.thread_time() - cpu_started
                call_us = max(0.0, cpu_calls - cpu_idle) / alone * 1e6
                quiet_runs, busy_runs = [await _flow(obs, sim, "quiet-0")], []
                for n in (1, 2):
                    busy_runs.append(await _flow(obs, sim, f"busy-{n}", statuses))
                    quiet_runs.append(await _flow(obs, sim, f"quiet-{n}"))
        client_in.close()
        assert await asyncio.wait_for(client.wait(), 10) == 0
    finally:
        if client.returncode is None:
            client.kill()
            await client.wait()
    # The median of the runs without: one run of the shared machine's outliers (2,720
    # jobs/s beside 1,968 and 2,019 in one CI run) must not set the bar alone.
    quiet = statistics.median(quiet_runs)
    busy = statistics.mean(busy_runs)
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"\nthroughput: {' / '.join(f'{r:.0f}' for r in quiet_runs)} jobs/s without ctl, "
        f"{' / '.join(f'{r:.0f}' for r in busy_runs)} jobs/s with {len(ms)} status calls "
        f"({busy / quiet:.0%}); event loop CPU a call {call_us:.0f} µs; status latency ms: "
        f"median {statistics.median(ms):.1f}, p95 {ms[int(0.95 * len(ms))]:.1f}, "
        f"max {ms[-1]:.1f}",
        file=sys.stderr,
    )
    assert len(ms) == STATUS_CALLS
    assert statistics.median(ms) < 25, ms
    assert call_us < 3000, (cpu_calls, cpu_idle, alone)
    assert busy >= 0.6 * quiet, (quiet_runs, busy_runs)


async def test_the_command_line_for_people_and_scripts(
    tmp_path: Path,
    mosquitto: Mosquitto,
    viettel: Simulator,
    sock_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from smppgw.cli import main

    sock = sock_dir / "ctl.sock"

    async def smppgw_ctl(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["ctl", "--socket", str(sock), *argv])
        out, err = capsys.readouterr()
        # The gateway's own log lines share this process's stdout: leave them out.
        kept = [line for line in out.splitlines(True) if not _LOG_LINE.match(line)]
        return code, "".join(kept), err

    async with running(_config(tmp_path, mosquitto, viettel, sock)):
        code, out, _ = await smppgw_ctl("status")
        assert code == 0 and out.splitlines()[1].startswith("viettel         up"), out
        assert "outbox 0, dead events 0" in out and "scheduled 0 (none)" in out
        code, out, _ = await smppgw_ctl("--json", "status")
        assert code == 0 and json.loads(out)["result"]["carriers"]["viettel"]["binds_up"] == 1
        code, out, _ = await smppgw_ctl("pause", "viettel")
        assert (code, out) == (0, "viettel: paused\n")
        code, out, _ = await smppgw_ctl("status")
        assert out.splitlines()[1].startswith("viettel         paused")
        code, _, err = await smppgw_ctl("jobs", "requeue", "x1")
        assert code == 1 and "--confirm-never-sent" in err
        code, out, _ = await smppgw_ctl("jobs", "list")
        assert (code, out) == (0, "no jobs\n")
    code, _, err = await smppgw_ctl("status")  # no gateway any more
    assert code == 2 and str(sock) in err
