"""The generic part of reading a config: a validator that records every problem.

A gateway that refuses to start should say exactly why, and all of it: an operator fixing a
config over SSH at night should not discover the problems one restart at a time. So reading
never stops at the first problem: every field is checked, each problem is recorded as
``path: message`` (``carriers[0].tps: must be a positive number, got 0``) by a
:class:`Reader`, and one :class:`ConfigError` carries the list. The sections
(:mod:`smppgw.config.sections`) are written in terms of this module's checks.

Secrets are resolved here and nowhere else (``password``, ``password_env``,
``password_file``); they are wrapped in :class:`~smppgw.config.model.Secret` at once, and no
message about a password field ever quotes its value.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from smppgw.config.model import Secret, TlsConfig

_PASSWORD_KEYS = ("password", "password_env", "password_file")
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "verify")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(ValueError):
    """The config cannot be used; ``problems`` lists every ``path: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Invalid:
    """Marks a field whose value was rejected (the problem is already recorded)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid>"


INVALID = Invalid()


def join(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def show(value: object) -> str:
    """A value as the user wrote it in YAML, short enough for one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return repr(text)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _kind(value: object) -> str:
    """The YAML type of a value, for messages about secrets (which never show the value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class Reader:
    """Collects problems while the document is walked; each check returns a value or INVALID."""

    def __init__(self, base_dir: Path | None, environ: Mapping[str, str]) -> None:
        self.problems: list[str] = []
        #: Not errors, but worth an operator's attention (``Config.warnings``).
        self.warnings: list[str] = []
        self.base_dir = base_dir
        self.environ = environ

    def problem(self, path: str, message: str) -> Invalid:
        self.problems.append(f"{path or 'config'}: {message}")
        return INVALID

    # ------------------------------------------------------------------ mappings

    def mapping(
        self, path: str, value: object, allowed: Sequence[str], *, hints: Mapping[str, str] = {}
    ) -> dict[str, Any] | Invalid:
        """A YAML mapping with only ``allowed`` keys; unknown keys get a suggestion."""
        if not isinstance(value, Mapping):
            return self.problem(path, f"must be a mapping of settings, got {show(value)}")
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.problem(join(path, str(key)), "unknown key; keys are names, not numbers")
                continue
            if key not in allowed:
                message = "unknown key"
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                if close:
                    message += f"; did you mean {close[0]}?"
                elif key in hints:
                    message += f"; {hints[key]}"
                self.problem(join(path, key), message)
                continue
            result[key] = item
        return result

    def distinct(
        self,
        path: str,
        value: object,
        check: Callable[[Reader, str, object], object],
        *,
        kind: str,
        example: str,
    ) -> tuple[str, ...] | Invalid:
        """A YAML list of distinct strings, each passing ``check`` (``kind`` names one)."""
        if not isinstance(value, list):
            return self.problem(path, f"must be a list like {example}, got {show(value)}")
        before = len(self.problems)
        result: list[str] = []
        for index, item in enumerate(value):
            where = join(path, index)
            text = check(self, where, item)
            if isinstance(text, str):
                if text in result:
                    self.problem(where, f"duplicate {kind} {text!r}")
                result.append(text)
        return INVALID if len(self.problems) > before else tuple(result)

    # ------------------------------------------------------------------ scalars

    def string(self, path: str, value: object, *, empty: bool = False) -> str | Invalid:
        if not isinstance(value, str):
            return self.problem(path, f"must be a string, got {show(value)}")
        if not empty and not value.strip():
            return self.problem(path, "must not be empty")
        return value

    def optional_string(self, path: str, value: object) -> str | Invalid | None:
        return None if value is None else self.string(path, value)

    def c_string(self, path: str, value: object, max_length: int, *, empty: bool = False) -> Any:
        """An SMPP C-Octet String: Latin-1, no NUL, at most ``max_length`` characters."""
        text = self.string(path, value, empty=empty)
        if isinstance(text, Invalid):
            return text
        if "\x00" in text or any(ord(c) > 0xFF for c in text):
            return self.problem(path, "must be Latin-1 text without NUL (SMPP C-Octet String)")
        if len(text) > max_length:
            return self.problem(
                path, f"must be at most {max_length} characters (SMPP 3.4), got {len(text)}"
            )
        return text

    def boolean(self, path: str, value: object) -> bool | Invalid:
        if not isinstance(value, bool):
            return self.problem(path, f"must be true or false, got {show(value)}")
        return value

    def integer(self, path: str, value: object, low: int, high: int | None = None) -> Any:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and value >= low and (high is None or value <= high):  # type: ignore[operator]
            return value
        if high is not None:
            wanted = f"an integer from {low} to {high}"
        elif low == 0:
            wanted = "a non-negative integer"
        elif low == 1:
            wanted = "a positive integer"
        else:
            wanted = f"an integer of at least {low}"
        return self.problem(path, f"must be {wanted}, got {show(value)}")

    def port(self, path: str, value: object) -> Any:
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
        if ok:
            return value
        return self.problem(path, f"must be a port number from 1 to 65535, got {show(value)}")

    def number(self, path: str, value: object, *, zero: bool = False) -> float | Invalid:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number) and (number > 0 or (zero and number == 0)):
                return number
        wanted = "a non-negative number" if zero else "a positive number"
        return self.problem(path, f"must be {wanted}, got {show(value)}")

    def duration(self, path: str, value: object, *, zero: bool = False) -> float | Invalid:
        """Seconds as a number, or a string of number+unit parts: ``"30s"``, ``"1h30m"``."""
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            seconds = parse_duration(value)
        if (
            seconds is not None
            and math.isfinite(seconds)
            and (seconds > 0 or (zero and seconds == 0))
        ):
            return seconds
        wanted = "a non-negative" if zero else "a positive"
        return self.problem(
            path,
            f'must be {wanted} duration: seconds, or a string like "500ms", "30s", "5m", "7d", '
            f"got {show(value)}",
        )

    def choice(self, path: str, value: object, options: Sequence[str]) -> str | Invalid:
        if isinstance(value, str) and value in options:
            return value
        return self.problem(path, f"must be one of {', '.join(options)}, got {show(value)}")

    def path(self, path: str, value: object, *, must_exist: bool) -> str | Invalid:
        """A file name, relative to the config file's directory."""
        text = self.string(path, value)
        if isinstance(text, Invalid):
            return text
        resolved = self.resolve(text)
        if must_exist and not resolved.is_file():
            return self.problem(path, f"file not found: {resolved}")
        return str(resolved)

    def resolve(self, name: str) -> Path:
        candidate = Path(name).expanduser()
        if not candidate.is_absolute() and self.base_dir is not None:
            candidate = self.base_dir / candidate
        return candidate

    # ------------------------------------------------------------------ secrets

    def secret(
        self, path: str, data: Mapping[str, Any], *, required: bool, name: str = "password"
    ) -> Secret | Invalid | None:
        """The secret from exactly one of ``<name>``, ``<name>_env``, ``<name>_file``
        (``password``; ``store.dsn``, ``cluster.redis``: URLs that carry credentials).

        Messages name the key and, for env/file, the variable or file, never the value.
        """
        keys = (name, f"{name}_env", f"{name}_file")
        given = [key for key in keys if key in data]
        if len(given) > 1:
            return self.problem(
                join(path, name),
                f"set only one of {', '.join(keys)} (found {', '.join(given)})",
            )
        if not given:
            if required:
                return self.problem(join(path, name), f"required: set one of {', '.join(keys)}")
            return None
        key = given[0]
        where = join(path, key)
        raw = data[key]
        if key == name:
            if not isinstance(raw, str):
                return self.problem(where, f"must be a string (quote it in YAML), got {_kind(raw)}")
            return Secret(raw)
        if key == f"{name}_env":
            if not isinstance(raw, str) or not _ENV_NAME.fullmatch(raw):
                return self.problem(where, f"must be an environment variable name, got {show(raw)}")
            value = self.environ.get(raw)
            if value is None:
                return self.problem(where, f"environment variable {raw} is not set")
            if not value:
                return self.problem(where, f"environment variable {raw} is empty")
            return Secret(value, origin=f"env {raw}")
        if not isinstance(raw, str) or not raw.strip():
            return self.problem(where, f"must be a file name, got {show(raw)}")
        file = self.resolve(raw)
        try:
            content = file.read_bytes()
        except OSError as exc:
            return self.problem(where, f"cannot read {file}: {exc.strerror or exc}")
        try:
            text = content.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            return self.problem(where, f"{file} is not UTF-8 text")
        if not text:
            return self.problem(where, f"{file} is empty")
        self._check_private(where, file)
        return Secret(text, origin=f"file {file}")

    def _check_private(self, where: str, file: Path) -> None:
        """Warn (names the file and its mode, never its content) when a password file is
        open to group or others: anyone who can read it can bind as us."""
        try:
            mode = file.stat().st_mode & 0o777
        except OSError:
            return
        if mode & 0o077:
            self.warnings.append(
                f"{where}: {file} is readable by group or others (mode {mode:04o}); "
                f"chmod 600 {file}"
            )

    # ------------------------------------------------------------------ composites

    def tls(self, path: str, value: object) -> TlsConfig | Invalid | None:
        """``tls: true`` (system CAs), ``false``/``null`` (plain TCP) or the mapping."""
        if value is None or value is False:
            return None
        if value is True:
            return TlsConfig()
        data = self.mapping(path, value, _TLS_KEYS)
        if isinstance(data, Invalid):
            return data
        before = len(self.problems)
        kwargs: dict[str, Any] = {}
        for key in ("ca_file", "cert_file", "key_file"):
            if data.get(key) is not None:
                kwargs[key] = self.path(join(path, key), data[key], must_exist=True)
        if "verify" in data:
            kwargs["verify"] = self.boolean(join(path, "verify"), data["verify"])
        if data.get("key_file") is not None and data.get("cert_file") is None:
            self.problem(join(path, "key_file"), "needs cert_file")
        return INVALID if len(self.problems) > before else TlsConfig(**kwargs)


def parse_duration(text: str) -> float | None:
    """``"30s"`` → 30.0, ``"1h30m"`` → 5400.0, ``"250ms"`` → 0.25, ``"90"`` → 90.0; else None."""
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        return None
    try:
        return float(compact) if re.fullmatch(r"\d+(\.\d*)?|\.\d+", compact) else _units(compact)
    except ValueError:
        return None


def _units(text: str) -> float | None:
    total = 0.0
    position = 0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total if position == len(text) and position > 0 else None


def parse_listen(listen: str, default_host: str | None = None) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` / ``"[::1]:9464"`` / ``"localhost:80"`` → (host, port); port 0
    asks for any free port. Raises ValueError naming what is wrong.

    The one parser of listen addresses (metrics, the simulator's flags). Without a
    ``default_host`` the host is required: ``":9464"`` is refused rather than read as every
    interface, since exposing an endpoint beyond loopback must be asked for by name
    (``0.0.0.0:9464``). With one (the simulator), ``":2775"`` and ``"2775"`` listen there.
    """
    host, _, port_text = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"listen address {listen!r}: an IPv6 host needs brackets ([::1]:9464)")
    if not host and default_host is not None:
        host = default_host
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"listen address {listen!r}: expected host:port (127.0.0.1:9464)")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"listen address {listen!r}: the port must be a number up to 65535")
    return host, int(port_text)
