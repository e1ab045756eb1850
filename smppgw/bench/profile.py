"""Sampling the gateway with py-spy while a scenario runs (``--profile DIR``).

py-spy reads the target's memory from outside (no code in the gateway, no restart), so the
profile is of the real ``smppgw run`` process under the real load. It is optional: the
benchmark says so and carries on when py-spy is not installed (``pip install py-spy``).
The raw (collapsed stacks) output is summarised here into the two lists that point at
work to remove: where the samples are (self) and what they are under (inclusive).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Profile", "Profiler", "summarise"]


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


class Profiler:
    """``py-spy record`` attached to ``pid`` until :meth:`stop`."""

    def __init__(self, pid: int, output: Path, *, rate: int = 250) -> None:
        binary = _py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.output = output
        self._log = open(output.with_suffix(".log"), "wb")  # noqa: SIM115 - child's lifetime
        self.proc = subprocess.Popen(
            [
                binary,
                "record",
                "-p",
                str(pid),
                "-o",
                str(output),
                "--format",
                "raw",
                "-r",
                str(rate),
                "--function",
                "--nonblocking",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@dataclass(frozen=True, slots=True)
class Profile:
    samples: int
    #: (frame, share of samples in that frame itself)
    self_time: list[tuple[str, float]]
    #: (frame, share of samples with that frame anywhere on the stack)
    inclusive: list[tuple[str, float]]

    def format(self, top: int = 25) -> str:
        lines = [f"{self.samples:,} samples"]
        lines.append("self:")
        lines += [f"  {share * 100:5.1f}%  {frame}" for frame, share in self.self_time[:top]]
        lines.append("inclusive:")
        lines += [f"  {share * 100:5.1f}%  {frame}" for frame, share in self.inclusive[:top]]
        return "\n".join(lines)


def summarise(raw: Path) -> Profile:
    """Self and inclusive shares per frame from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            under[frame] += count
    if not total:
        return Profile(0, [], [])
    return Profile(
        total,
        [(f, n / total) for f, n in own.most_common()],
        [(f, n / total) for f, n in under.most_common()],
    )
