"""Kannel (``bearerbox`` + ``smsbox``, Debian's ``kannel`` package) on the benchmark's
workload, for ``smppgw bench e2e --peer kannel``.

The benchmark installs nothing: it uses the two binaries when they are on ``PATH`` (or in
``/usr/sbin``, where Debian puts them). Kannel is configured the way its users run it for
this traffic: one ``smpp`` smsc group with two transceiver binds (``instances = 2``) of
window ``max-pending-submits 100`` and no throughput limit, the spool message store,
in-memory DLR storage, messages injected over HTTP (smsbox's ``sendsms``) and every
report (``dlr-mask`` 1+2+8: the SMSC's ack of the submit and the final state, as smppgw's
two events) sent to a ``dlr-url``. Logging at warnings only and no access log: less work
for Kannel than many sites ask of it, so its figures are if anything flattering.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from smppgw.bench.httpload import DLR_DELIVERED, DlrSink, Injector, SendSms
from smppgw.bench.load import index_of_destination
from smppgw.bench.procs import Child, SimProcess, free_port, start_sim
from smppgw.procs import start_planned

__all__ = [
    "INSTALL_HINT",
    "KannelBinaries",
    "find_kannel",
    "kannel_config",
]

INSTALL_HINT = "apt-get install kannel"
SYSTEM_ID = "bench"
#: SMPP 3.4 passwords are at most 8 octets; Kannel would truncate a longer one.
PASSWORD = "bench-pw"
SENDSMS_USER = "bench"
SENDSMS_PASSWORD = "bench-pw"
SENDER = "SHOPVN"


@dataclass(frozen=True, slots=True)
class KannelBinaries:
    bearerbox: str
    smsbox: str

    def version(self) -> str:
        """``1.4.5``, from ``bearerbox --version`` (its first line)."""
        try:
            out = subprocess.run(
                [self.bearerbox, "--version"], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        m = re.search(r"version `([^']+)'", out.stdout + out.stderr)
        return m.group(1) if m else "unknown"


#: Where Debian puts the boxes, looked at when they are not on PATH (a user's PATH often
#: lacks the sbin directories).
SBIN_DIRS: tuple[str, ...] = ("/usr/sbin", "/usr/local/sbin")


def _which(name: str) -> str | None:
    found = shutil.which(name)
    for directory in SBIN_DIRS:
        if found is None and os.access(f"{directory}/{name}", os.X_OK):
            found = f"{directory}/{name}"
    return found


def find_kannel() -> KannelBinaries | None:
    """Both boxes, or None when either is missing."""
    bearerbox, smsbox = _which("bearerbox"), _which("smsbox")
    if bearerbox is None or smsbox is None:
        return None
    return KannelBinaries(bearerbox, smsbox)


@dataclass(frozen=True, slots=True)
class KannelPorts:
    admin: int
    smsbox: int
    sendsms: int

    @classmethod
    def free(cls) -> KannelPorts:
        """Three different free loopback ports (held open together while chosen, so the
        kernel cannot hand out one of them twice)."""
        with ExitStack() as held:
            ports = []
            for _ in range(3):
                sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                sock.bind(("127.0.0.1", 0))
                ports.append(sock.getsockname()[1])
        return cls(*ports)


def _start_bearerbox(
    binaries: KannelBinaries,
    workdir: Path,
    smsc_port: int,
    spool: Path | None,
    binds: int,
    window: int,
) -> tuple[Child, KannelPorts, Path]:
    """bearerbox on three ports planned free; planned anew when one was taken before
    bearerbox bound it (the machine is shared; bearerbox then exits at once)."""
    config = workdir / "kannel.conf"
    planned: list[KannelPorts] = []

    def plan() -> int:
        """Three ports planned free, in the config file; the one to wait on."""
        ports = KannelPorts.free()
        planned.append(ports)
        text = kannel_config(workdir, ports, smsc_port, spool=spool, binds=binds, window=window)
        config.write_text(text)
        return ports.smsbox

    # -v 2: warnings and worse on stderr (the default, debug, would cost Kannel dearly).
    bearerbox = Child(
        "bearerbox", [binaries.bearerbox, "-v", "2", str(config)], workdir / "bearerbox.out"
    )
    start_planned(bearerbox, "127.0.0.1", plan(), replan=plan, timeout=20.0)
    return bearerbox, planned[-1], config


def kannel_config(
    workdir: Path,
    ports: KannelPorts,
    smsc_port: int,
    *,
    spool: Path | None = None,
    binds: int = 2,
    window: int = 100,
) -> str:
    """The whole ``kannel.conf`` of one run (logs under ``workdir``; the message store in
    ``spool``, by default ``workdir/spool``)."""
    if spool is None:
        spool = workdir / "spool"
    spool.mkdir(exist_ok=True)
    return f"""\
group = core
admin-port = {ports.admin}
admin-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = {ports.smsbox}
box-allow-ip = "127.0.0.1"
log-file = "{workdir / "bearerbox.log"}"
log-level = 2
store-type = spool
store-location = "{spool}"
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = sim
host = 127.0.0.1
port = {smsc_port}
receive-port = 0
transceiver-mode = true
instances = {binds}
smsc-username = {SYSTEM_ID}
smsc-password = {PASSWORD}
system-type = bench
interface-version = 34
max-pending-submits = {window}
# The simulator's message ids are hex (submit_sm_resp and receipt alike).
msg-id-type = 0x03
reconnect-delay = 1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports.smsbox}
sendsms-port = {ports.sendsms}
log-file = "{workdir / "smsbox.log"}"
log-level = 2

group = sendsms-user
username = {SENDSMS_USER}
password = {SENDSMS_PASSWORD}
max-messages = 1
"""


@dataclass
class KannelStack:
    workdir: Path
    sim: SimProcess
    bearerbox: Child
    smsbox: Child
    sink: DlrSink
    injector: Injector

    def children(self) -> dict[str, int]:
        return {
            "bearerbox": self.bearerbox.pid,
            "smsbox": self.smsbox.pid,
            "sim": self.sim.pid,
            "injector": self.injector.pid,
            "dlr sink": self.sink.pid,
        }

    def cpu(self) -> float:
        """bearerbox's and smsbox's CPU seconds so far: what Kannel spends."""
        return self.bearerbox.sample().cpu + self.smsbox.sample().cpu

    def check(self) -> None:
        self.bearerbox.check()
        self.smsbox.check()


@contextmanager
def kannel_stack(
    binaries: KannelBinaries,
    base: Path | None,
    *,
    keep: bool,
    receipt_delay: float,
    spool_base: Path | None = None,
    binds: int = 2,
    window: int = 100,
) -> Iterator[KannelStack]:
    """Simulator, DLR sink, bearerbox, smsbox and the injector, started in that order and
    proven working: every bind is up and smsbox answers on its sendsms port. Everything
    is stopped by PID on the way out (smsbox before bearerbox). ``spool_base``: where the
    message store goes (a new directory in it), by default the run's directory."""
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="smppgw-bench-kannel-", dir=base))
    with ExitStack() as cleanup:
        if not keep:
            cleanup.callback(shutil.rmtree, workdir, True)
        sim = start_sim(
            workdir,
            f"{SYSTEM_ID}:{PASSWORD}",
            receipt_delay=receipt_delay,
            extra=["--enquire-link", "0"],
        )
        cleanup.callback(sim.close)
        sink = DlrSink("127.0.0.1", free_port())
        cleanup.callback(sink.close)
        spool: Path | None = None
        if spool_base is not None:
            # --kannel-spool names a base directory; like --workdir, it need not exist yet.
            Path(spool_base).mkdir(parents=True, exist_ok=True)
            spool = Path(tempfile.mkdtemp(prefix="smppgw-bench-kannel-spool-", dir=spool_base))
            if not keep:
                cleanup.callback(shutil.rmtree, spool, True)
        bearerbox, ports, config = _start_bearerbox(
            binaries, workdir, sim.port, spool, binds, window
        )
        cleanup.callback(bearerbox.close)
        smsbox = Child("smsbox", [binaries.smsbox, "-v", "2", str(config)], workdir / "smsbox.out")
        smsbox.start()
        # Stopped first: the ExitStack unwinds in reverse.
        cleanup.callback(smsbox.close)
        smsbox.wait_port("127.0.0.1", ports.sendsms, 20.0)
        deadline = time.monotonic() + 20.0
        while sim.stats()["binds"] < binds:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kannel's binds not up:\n{bearerbox.log_tail()}")
            bearerbox.check()
            time.sleep(0.05)
        sendsms = SendSms(SENDSMS_USER, SENDSMS_PASSWORD, SENDER, sink.dlr_url())
        injector = Injector("127.0.0.1", ports.sendsms, sendsms)
        cleanup.callback(injector.close)
        stack = KannelStack(workdir, sim, bearerbox, smsbox, sink, injector)
        yield stack
        stack.check()


def delivered_count(finals: dict[int, tuple[int, float]], below: int) -> int:
    """Jobs below ``below`` whose final report says delivered."""
    return sum(1 for i, (kind, _) in finals.items() if kind == DLR_DELIVERED and i < below)


def submit_arrivals(sim: SimProcess, since: int, count: int) -> dict[int, float]:
    """Job number → when its submit_sm reached the simulator (jobs below ``count``)."""
    arrived: dict[int, float] = {}
    for item in sim.all_submits(since):
        index = index_of_destination(item["destination"])
        if index is not None and index < count:
            arrived.setdefault(index, item["at"])
    return arrived
