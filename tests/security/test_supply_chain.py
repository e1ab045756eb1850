"""Supply chain: every install of the image and of CI goes through a lock with hashes.

The locks in requirements/ are written by ``scripts/lock`` (uv, pinned) from pyproject.toml.
These tests need no network: they check that the locks still cover what pyproject.toml
declares (a dependency added or tightened without re-locking fails here, not in a build),
that every pin carries hashes and names no local path or index, and that every script that
installs the package does so from the locks, with ``--require-hashes``, and builds the
package itself with neither dependencies nor an unpinned build environment.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent.parent
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Which lock each installer uses (the test extra for CI, the runtime deps for the image).
INSTALLERS = {
    ".ci/run": {"test.txt"},
    "scripts/test": {"test.txt"},
    "scripts/demo": {"runtime.txt", "build.txt"},
    "Dockerfile": {"runtime.txt", "build.txt"},
}


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: tuple[str, ...]


def read_lock(name: str) -> dict[str, Pin]:
    """Canonical package name → pin; anything but ``name==version --hash=...`` fails."""
    path = LOCKS / name
    assert path.exists(), f"{path} missing: run scripts/lock"
    text = re.sub(r"\\\n", " ", path.read_text())
    pins: dict[str, Pin] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split()
        package, pinned, version = requirement.partition("==")
        assert pinned, f"{name}: {requirement!r} is not pinned with =="
        hashes = tuple(o.removeprefix("--hash=") for o in options if o.startswith("--hash="))
        assert len(hashes) == len(options), f"{name}: {package}: options besides --hash {options}"
        assert hashes, f"{name}: {package}=={version} has no --hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), (name, package)
        pins[canonicalize_name(package)] = Pin(version, hashes)
    return pins


def declared(requirements: list[str]) -> list[Requirement]:
    """The requirements that apply on Linux (the lock's target)."""
    parsed = [Requirement(r) for r in requirements]
    return [r for r in parsed if r.marker is None or r.marker.evaluate({"sys_platform": "linux"})]


def assert_locked(lock: str, requirements: list[Requirement]) -> None:
    pins = read_lock(lock)
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is in pyproject.toml but not in {lock}: scripts/lock"
        version = pins[name].version
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, pyproject.toml wants {requirement}: scripts/lock"
        )


RUNTIME = declared(PYPROJECT["project"]["dependencies"])
TEST_EXTRA = declared(PYPROJECT["project"]["optional-dependencies"]["test"])
BUILD = declared(PYPROJECT["build-system"]["requires"])


def test_runtime_lock_pins_every_dependency_with_hashes() -> None:
    assert_locked("runtime.txt", RUNTIME)


def test_build_lock_pins_the_build_backend_with_hashes() -> None:
    assert_locked("build.txt", BUILD)


def test_test_lock_pins_dependencies_test_extra_and_build_backend() -> None:
    assert_locked("test.txt", RUNTIME + TEST_EXTRA + BUILD)


def test_locks_agree_on_shared_versions() -> None:
    """CI tests the versions the image ships: a package in two locks has one version."""
    test = read_lock("test.txt")
    for lock in ("runtime.txt", "build.txt"):
        for name, pin in read_lock(lock).items():
            assert name in test, f"{name} is in {lock} but not in test.txt"
            assert test[name].version == pin.version, (lock, name, pin.version)


@pytest.mark.parametrize("lock", ["runtime.txt", "build.txt", "test.txt"])
def test_lock_names_no_local_path_or_index(lock: str) -> None:
    """A lock made on a machine with local mirrors must not point installs at them."""
    text = (LOCKS / lock).read_text()
    for token in text.split():
        assert not token.startswith(("/", "file:", "http:", "https:")), (lock, token)
    for option in ("--index-url", "--extra-index-url", "--find-links", "-f ", "-e "):
        assert option not in text, (lock, option)
    assert "scripts/lock" in text.splitlines()[1], "header names the command that wrote it"


def pip_commands(path: Path) -> list[str]:
    """Every ``pip install`` / ``pip wheel`` command in a shell script or Dockerfile."""
    text = re.sub(r"\\\n", " ", path.read_text())
    commands = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for part in re.split(r"&&|\|\||;|[{}]", line):
            if re.search(r"\bpip\b.*\b(install|wheel)\b", part) and part.split()[0] != "echo":
                commands.append(" ".join(part.split()))
    return commands


@pytest.mark.parametrize("installer", sorted(INSTALLERS))
def test_installers_use_the_locks_with_require_hashes(installer: str) -> None:
    commands = pip_commands(ROOT / installer)
    assert commands, f"{installer}: no pip command found"
    used: set[str] = set()
    for command in commands:
        if "--require-hashes" in command:
            used |= set(re.findall(r"-r requirements/(\S+)", command))
            continue
        # Everything else installs only the package itself: no resolving, no downloads.
        assert "--no-deps" in command, f"{installer}: unlocked install: {command}"
        builds_from_source = " wheel " in f" {command} " or re.search(r"\s\.$", command)
        if builds_from_source:
            assert "--no-build-isolation" in command, (
                f"{installer}: pip would fetch an unpinned build backend: {command}"
            )
    assert used == INSTALLERS[installer], f"{installer} installs from {used}"
