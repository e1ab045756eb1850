"""YAML config → the frozen dataclasses of :mod:`smppgw.settings`, with every problem at once.

A gateway that refuses to start should say exactly why, and all of it: an operator fixing a
config over SSH at night should not discover the problems one restart at a time. So parsing
never stops at the first problem: every field is checked, each problem is recorded as
``path: message`` (``carriers[0].tps: must be a positive number, got 0``) and one
:class:`ConfigError` carries the list.

Secrets are resolved here and nowhere else (``password``, ``password_env``,
``password_file``); they are wrapped in :class:`~smppgw.settings.Secret` at once, and no
message about a password field ever quotes its value.

YAML keys are the dataclass field names, plus ``password_env`` / ``password_file``,
``source {address, ton, npi}`` and ``tls {ca_file, cert_file, key_file, verify}``.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from smppgw.envelope import own_topics, under
from smppgw.errors import Action, parse_status
from smppgw.routing import Router, is_digits, numeric_sender, sender_problem
from smppgw.settings import (
    BindMode,
    CarrierConfig,
    Config,
    LogConfig,
    LogFormat,
    MetricsConfig,
    MqttConfig,
    RoutingConfig,
    Secret,
    SourceConfig,
    StoreConfig,
    TenantConfig,
    TlsConfig,
)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
CODINGS = ("auto", "gsm", "latin1", "ucs2")
CONCATS = ("udh8", "udh16", "sar", "payload")
ID_BASES = ("string", "hex", "decimal")
_PASSWORD_KEYS = ("password", "password_env", "password_file")
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "verify")
_SOURCE_KEYS = ("address", "ton", "npi")
_STORE_KEYS = ("path", "retention", "commit_interval", "keep_text")
_METRICS_KEYS = ("listen",)
_LOG_KEYS = ("level", "format")
_ROUTING_KEYS = ("country_code", "allow_international")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CARRIER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PRIORITY_NAMES = ("high", "normal", "low")
_MQTT_MAX_PAYLOAD = 268_435_455
_MQTT_MAX_EXPIRY = 0xFFFFFFFF
#: MQTT 5 Binary Data (Correlation Data) holds at most this many octets.
_MQTT_MAX_BINARY = 65535


class ConfigError(ValueError):
    """The config cannot be used; ``problems`` lists every ``path: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Invalid:
    """Marks a field whose value was rejected (the problem is already recorded)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid>"


INVALID = _Invalid()


def _join(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def _show(value: object) -> str:
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


class _Reader:
    """Collects problems while the document is walked; each check returns a value or INVALID."""

    def __init__(self, base_dir: Path | None, environ: Mapping[str, str]) -> None:
        self.problems: list[str] = []
        #: Not errors, but worth an operator's attention (``Config.warnings``).
        self.warnings: list[str] = []
        self.base_dir = base_dir
        self.environ = environ

    def problem(self, path: str, message: str) -> _Invalid:
        self.problems.append(f"{path or 'config'}: {message}")
        return INVALID

    # ------------------------------------------------------------------ mappings

    def mapping(
        self, path: str, value: object, allowed: Sequence[str], *, hints: Mapping[str, str] = {}
    ) -> dict[str, Any] | _Invalid:
        """A YAML mapping with only ``allowed`` keys; unknown keys get a suggestion."""
        if not isinstance(value, Mapping):
            return self.problem(path, f"must be a mapping of settings, got {_show(value)}")
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.problem(_join(path, str(key)), "unknown key; keys are names, not numbers")
                continue
            if key not in allowed:
                message = "unknown key"
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                if close:
                    message += f"; did you mean {close[0]}?"
                elif key in hints:
                    message += f"; {hints[key]}"
                self.problem(_join(path, key), message)
                continue
            result[key] = item
        return result

    def distinct(
        self,
        path: str,
        value: object,
        check: Callable[[_Reader, str, object], object],
        *,
        kind: str,
        example: str,
    ) -> tuple[str, ...] | _Invalid:
        """A YAML list of distinct strings, each passing ``check`` (``kind`` names one)."""
        if not isinstance(value, list):
            return self.problem(path, f"must be a list like {example}, got {_show(value)}")
        before = len(self.problems)
        result: list[str] = []
        for index, item in enumerate(value):
            where = _join(path, index)
            text = check(self, where, item)
            if isinstance(text, str):
                if text in result:
                    self.problem(where, f"duplicate {kind} {text!r}")
                result.append(text)
        return INVALID if len(self.problems) > before else tuple(result)

    # ------------------------------------------------------------------ scalars

    def string(self, path: str, value: object, *, empty: bool = False) -> str | _Invalid:
        if not isinstance(value, str):
            return self.problem(path, f"must be a string, got {_show(value)}")
        if not empty and not value.strip():
            return self.problem(path, "must not be empty")
        return value

    def optional_string(self, path: str, value: object) -> str | _Invalid | None:
        return None if value is None else self.string(path, value)

    def c_string(self, path: str, value: object, max_length: int, *, empty: bool = False) -> Any:
        """An SMPP C-Octet String: Latin-1, no NUL, at most ``max_length`` characters."""
        text = self.string(path, value, empty=empty)
        if isinstance(text, _Invalid):
            return text
        if "\x00" in text or any(ord(c) > 0xFF for c in text):
            return self.problem(path, "must be Latin-1 text without NUL (SMPP C-Octet String)")
        if len(text) > max_length:
            return self.problem(
                path, f"must be at most {max_length} characters (SMPP 3.4), got {len(text)}"
            )
        return text

    def boolean(self, path: str, value: object) -> bool | _Invalid:
        if not isinstance(value, bool):
            return self.problem(path, f"must be true or false, got {_show(value)}")
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
        return self.problem(path, f"must be {wanted}, got {_show(value)}")

    def port(self, path: str, value: object) -> Any:
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
        if ok:
            return value
        return self.problem(path, f"must be a port number from 1 to 65535, got {_show(value)}")

    def number(self, path: str, value: object, *, zero: bool = False) -> float | _Invalid:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number) and (number > 0 or (zero and number == 0)):
                return number
        wanted = "a non-negative number" if zero else "a positive number"
        return self.problem(path, f"must be {wanted}, got {_show(value)}")

    def duration(self, path: str, value: object, *, zero: bool = False) -> float | _Invalid:
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
            f"got {_show(value)}",
        )

    def choice(self, path: str, value: object, options: Sequence[str]) -> str | _Invalid:
        if isinstance(value, str) and value in options:
            return value
        return self.problem(path, f"must be one of {', '.join(options)}, got {_show(value)}")

    def path(self, path: str, value: object, *, must_exist: bool) -> str | _Invalid:
        """A file name, relative to the config file's directory."""
        text = self.string(path, value)
        if isinstance(text, _Invalid):
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
        self, path: str, data: Mapping[str, Any], *, required: bool
    ) -> Secret | _Invalid | None:
        """The password from exactly one of ``password``, ``password_env``, ``password_file``.

        Messages name the key and, for env/file, the variable or file, never the value.
        """
        given = [key for key in _PASSWORD_KEYS if key in data]
        if len(given) > 1:
            return self.problem(
                _join(path, "password"),
                f"set only one of password, password_env, password_file (found {', '.join(given)})",
            )
        if not given:
            if required:
                return self.problem(
                    _join(path, "password"),
                    "required: set one of password, password_env, password_file",
                )
            return None
        key = given[0]
        where = _join(path, key)
        raw = data[key]
        if key == "password":
            if not isinstance(raw, str):
                return self.problem(where, f"must be a string (quote it in YAML), got {_kind(raw)}")
            return Secret(raw)
        if key == "password_env":
            if not isinstance(raw, str) or not _ENV_NAME.fullmatch(raw):
                return self.problem(
                    where, f"must be an environment variable name, got {_show(raw)}"
                )
            value = self.environ.get(raw)
            if value is None:
                return self.problem(where, f"environment variable {raw} is not set")
            if not value:
                return self.problem(where, f"environment variable {raw} is empty")
            return Secret(value, origin=f"env {raw}")
        if not isinstance(raw, str) or not raw.strip():
            return self.problem(where, f"must be a file name, got {_show(raw)}")
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

    def tls(self, path: str, value: object) -> TlsConfig | _Invalid | None:
        """``tls: true`` (system CAs), ``false``/``null`` (plain TCP) or the mapping."""
        if value is None or value is False:
            return None
        if value is True:
            return TlsConfig()
        data = self.mapping(path, value, _TLS_KEYS)
        if isinstance(data, _Invalid):
            return data
        before = len(self.problems)
        kwargs: dict[str, Any] = {}
        for key in ("ca_file", "cert_file", "key_file"):
            if data.get(key) is not None:
                kwargs[key] = self.path(_join(path, key), data[key], must_exist=True)
        if "verify" in data:
            kwargs["verify"] = self.boolean(_join(path, "verify"), data["verify"])
        if data.get("key_file") is not None and data.get("cert_file") is None:
            self.problem(_join(path, "key_file"), "needs cert_file")
        return INVALID if len(self.problems) > before else TlsConfig(**kwargs)

    def source(self, path: str, value: object) -> SourceConfig | _Invalid | None:
        """``source: SHOPVN`` or ``{address, ton, npi}``; TON/NPI default from the address."""
        if value is None:
            return None
        data: dict[str, Any] | _Invalid
        data = (
            {"address": value}
            if isinstance(value, str)
            else self.mapping(path, value, _SOURCE_KEYS)
        )
        if isinstance(data, _Invalid):
            return data
        before = len(self.problems)
        if "address" not in data:
            return self.problem(_join(path, "address"), "required")
        address = self.string(_join(path, "address"), data["address"])
        if isinstance(address, str):
            problem = sender_problem(address)
            if problem is not None:
                self.problem(_join(path, "address"), problem)
            address = numeric_sender(address) or address
        numeric = isinstance(address, str) and is_digits(address)
        ton = self.integer(_join(path, "ton"), data.get("ton", 1 if numeric else 5), 0, 255)
        npi = self.integer(_join(path, "npi"), data.get("npi", 1 if numeric else 0), 0, 255)
        if len(self.problems) > before or isinstance(address, _Invalid):
            return INVALID
        return SourceConfig(address=address, ton=ton, npi=npi)


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


# ---------------------------------------------------------------------- sections

_TOP_KEYS = (
    "mqtt",
    "store",
    "metrics",
    "log",
    "routing",
    "carriers",
    "tenants",
    "drain_timeout",
)
#: Keys that are often put in the wrong section.
_HINTS = {
    "country_code": "it belongs in routing",
    "level": "it belongs in log",
    "listen": "it belongs in metrics",
    "submit_topic": "it belongs in mqtt",
    "prefixes": "it belongs in a carrier",
}


def _topic(r: _Reader, path: str, value: object) -> str | _Invalid:
    text = r.string(path, value)
    if isinstance(text, _Invalid):
        return text
    if "+" in text or "#" in text:
        return r.problem(path, "must not contain the wildcards + or #")
    if "\x00" in text:
        return r.problem(path, "must not contain NUL")
    if text.startswith("$"):
        return r.problem(
            path, "must not start with $ (use mqtt.shared_group to share a subscription)"
        )
    if text.startswith("/") or text.endswith("/"):
        return r.problem(path, "must not start or end with /")
    return text


def _mqtt(r: _Reader, value: object) -> MqttConfig | _Invalid:
    path = "mqtt"
    data = r.mapping(path, {} if value is None else value, _MQTT_KEYS, hints=_HINTS)
    if isinstance(data, _Invalid):
        return data
    before = len(r.problems)
    kwargs: dict[str, Any] = {}
    for key, check in _MQTT_CHECKS.items():
        if key in data:
            kwargs[key] = check(r, _join(path, key), data[key])
    kwargs["password"] = r.secret(path, data, required=False)
    if len(r.problems) > before:
        return INVALID
    config = MqttConfig(**kwargs)
    for index, prefix in enumerate(config.response_prefixes):
        for root in own_topics(config):
            if under(prefix, root):
                r.problem(
                    _join(_join(path, "response_prefixes"), index),
                    f"{prefix!r} is inside the gateway's own topic tree ({root}): "
                    "replies there are always refused",
                )
                break
    return INVALID if len(r.problems) > before else config


def _response_prefixes(r: _Reader, path: str, value: object) -> tuple[str, ...] | _Invalid:
    """Topic prefixes (``shop/replies``) a job's Response Topic must lie under."""
    if value is None:
        return ()
    return r.distinct(path, value, _topic, kind="topic prefix", example='["shop/replies"]')


def _share_group(r: _Reader, path: str, value: object) -> str | _Invalid | None:
    if value is None:
        return None
    text = r.string(path, value)
    if isinstance(text, str) and any(c in text for c in "/+#\x00"):
        return r.problem(path, "must not contain /, +, # or NUL")
    return text


def _expiry(r: _Reader, path: str, value: object) -> int | _Invalid:
    seconds = r.duration(path, value, zero=True)
    if isinstance(seconds, _Invalid):
        return seconds
    if seconds > _MQTT_MAX_EXPIRY:
        return r.problem(path, f"must be at most {_MQTT_MAX_EXPIRY} seconds (MQTT 5 limit)")
    return round(seconds)


def _store(r: _Reader, value: object) -> StoreConfig | _Invalid:
    data = r.mapping("store", {} if value is None else value, _STORE_KEYS)
    if isinstance(data, _Invalid):
        return data
    before = len(r.problems)
    kwargs: dict[str, Any] = {}
    if "path" in data:
        kwargs["path"] = r.path("store.path", data["path"], must_exist=False)
    if "retention" in data:
        kwargs["retention"] = r.duration("store.retention", data["retention"])
    if "commit_interval" in data:
        kwargs["commit_interval"] = r.duration(
            "store.commit_interval", data["commit_interval"], zero=True
        )
    if "keep_text" in data:
        kwargs["keep_text"] = r.boolean("store.keep_text", data["keep_text"])
    return INVALID if len(r.problems) > before else StoreConfig(**kwargs)


def _metrics(r: _Reader, value: object) -> MetricsConfig | _Invalid:
    data = r.mapping("metrics", {} if value is None else value, _METRICS_KEYS)
    if isinstance(data, _Invalid):
        return data
    if "listen" not in data:
        return MetricsConfig()
    listen = data["listen"]
    if listen is None:
        return MetricsConfig(listen=None)
    if isinstance(listen, str) and parse_listen(listen) is not None:
        return MetricsConfig(listen=listen)
    return r.problem(
        "metrics.listen",
        f'must be "host:port" (like "127.0.0.1:9464") or null, got {_show(listen)}',
    )


def parse_listen(listen: str) -> tuple[str, int] | None:
    """``"127.0.0.1:9464"`` / ``"[::1]:9464"`` → (host, port); None when malformed."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not is_digits(port_text):
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None  # an IPv6 address needs brackets
    port = int(port_text)
    if not host or not 1 <= port <= 65535 or any(c.isspace() for c in host):
        return None
    return host, port


def _log(r: _Reader, value: object) -> LogConfig | _Invalid:
    data = r.mapping("log", {} if value is None else value, _LOG_KEYS)
    if isinstance(data, _Invalid):
        return data
    before = len(r.problems)
    kwargs: dict[str, Any] = {}
    if "level" in data:
        level = data["level"]
        kwargs["level"] = r.choice(
            "log.level", level.lower() if isinstance(level, str) else level, LOG_LEVELS
        )
    if "format" in data:
        chosen = r.choice("log.format", data["format"], [f.value for f in LogFormat])
        kwargs["format"] = chosen if isinstance(chosen, _Invalid) else LogFormat(chosen)
    return INVALID if len(r.problems) > before else LogConfig(**kwargs)


def _routing(r: _Reader, value: object) -> RoutingConfig | _Invalid:
    data = r.mapping("routing", {} if value is None else value, _ROUTING_KEYS)
    if isinstance(data, _Invalid):
        return data
    before = len(r.problems)
    kwargs: dict[str, Any] = {}
    if "country_code" in data:
        kwargs["country_code"] = _country_code(r, "routing.country_code", data["country_code"])
    home = kwargs.get("country_code", RoutingConfig().country_code)
    allowed = data.get("allow_international")
    if allowed is not None:
        kwargs["allow_international"] = _country_codes(
            r, "routing.allow_international", allowed, home
        )
    return INVALID if len(r.problems) > before else RoutingConfig(**kwargs)


def _country_code(r: _Reader, path: str, code: object) -> str | _Invalid:
    if isinstance(code, str) and is_digits(code) and len(code) <= 3 and not code.startswith("0"):
        return code
    return r.problem(
        path, f'must be 1 to 3 digits as a quoted string (like "84"), got {_show(code)}'
    )


def _country_codes(r: _Reader, path: str, value: object, home: object) -> Any:
    """Country codes international destinations may have (``["1", "44"]``)."""

    def international(r: _Reader, where: str, item: object) -> str | _Invalid:
        code = _country_code(r, where, item)
        if code == home:
            return r.problem(
                where, f"{code!r} is routing.country_code: national numbers need no entry"
            )
        return code

    return r.distinct(path, value, international, kind="country code", example='["1", "44"]')


def _prefix(r: _Reader, path: str, value: object) -> str | _Invalid:
    if not isinstance(value, str):
        return r.problem(
            path, f'must be a quoted string of digits (like "8486"), got {_show(value)}'
        )
    if value.startswith("+") or (value.startswith("0") and is_digits(value)):
        return r.problem(
            path,
            f'must be in E.164 form without + or a leading 0 (like "8486"), got {_show(value)}',
        )
    if not is_digits(value) or len(value) > 15:
        return r.problem(path, f"must be 1 to 15 digits, got {_show(value)}")
    return value


def _prefixes(r: _Reader, path: str, value: object) -> tuple[str, ...] | _Invalid:
    if value is None:
        return ()
    if not isinstance(value, list):
        return r.problem(
            path, f'must be a list of prefixes (like ["8486", "8496"]), got {_show(value)}'
        )
    result: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        prefix = _prefix(r, _join(path, index), item)
        if isinstance(prefix, _Invalid):
            result.append("")  # keeps indexes aligned for the cross-carrier check
            continue
        if prefix in seen:
            r.problem(_join(path, index), f"duplicate prefix {prefix!r}")
        seen.add(prefix)
        result.append(prefix)
    # With a problem recorded the carrier is not built, so the "" placeholders never escape.
    return tuple(result)


def _carrier(
    r: _Reader, path: str, value: object
) -> tuple[CarrierConfig | _Invalid, dict[str, Any]]:
    """The carrier, and the fields that parsed (for the cross-carrier checks)."""
    data = r.mapping(path, value, _CARRIER_KEYS, hints=_HINTS)
    if isinstance(data, _Invalid):
        return data, {}
    before = len(r.problems)
    for key in ("name", "host", "port", "system_id"):
        if key not in data:
            r.problem(_join(path, key), "required")
    kwargs: dict[str, Any] = {}
    for key, check in _CARRIER_CHECKS.items():
        if key in data:
            kwargs[key] = check(r, _join(path, key), data[key])
    password = r.secret(path, data, required=True)
    if isinstance(password, Secret):
        if "\x00" in password.reveal() or any(ord(c) > 0xFF for c in password.reveal()):
            r.problem(
                _join(path, "password"), "must be Latin-1 text without NUL (SMPP C-Octet String)"
            )
        kwargs["password"] = password
    _ordered(r, path, kwargs, "reconnect_min", "reconnect_max", CarrierConfig)
    _ordered(r, path, kwargs, "throttle_backoff", "throttle_backoff_max", CarrierConfig)
    if len(r.problems) > before:
        return INVALID, kwargs
    return CarrierConfig(**kwargs), kwargs


def _ordered(r: _Reader, path: str, kwargs: dict[str, Any], low: str, high: str, cls: Any) -> None:
    """``low`` must not exceed ``high`` (either may be the default)."""
    defaults = {f.name: f.default for f in fields(cls)}
    low_value = kwargs.get(low, defaults[low])
    high_value = kwargs.get(high, defaults[high])
    numbers = isinstance(low_value, float | int) and isinstance(high_value, float | int)
    if numbers and low_value > high_value:
        r.problem(
            _join(path, high if high in kwargs else low),
            f"{high} ({high_value:g}s) must not be less than {low} ({low_value:g}s)",
        )


def _error_policy(r: _Reader, path: str, value: object) -> tuple[tuple[str, str], ...] | _Invalid:
    """``{ESME_RSYSERR: permanent, 0x58: throttle}``: per-status overrides of smppgw.errors."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        return r.problem(
            path,
            f"must be a mapping of status to action (like ESME_RSYSERR: permanent), "
            f"got {_show(value)}",
        )
    before = len(r.problems)
    result: list[tuple[str, str]] = []
    seen: dict[int, str] = {}
    actions = [a.value for a in Action]
    for key, action in value.items():
        where = _join(path, str(key))
        if isinstance(key, bool) or not isinstance(key, str | int):
            r.problem(
                where, "must be an SMPP command_status (a name like ESME_RSYSERR, or a number)"
            )
            continue
        try:
            status = parse_status(key)
        except ValueError as exc:
            r.problem(where, str(exc))
            continue
        if status in seen:
            r.problem(where, f"the same status as {seen[status]}")
            continue
        seen[status] = str(key)
        chosen = r.choice(where, action.lower() if isinstance(action, str) else action, actions)
        if isinstance(chosen, str):
            result.append((str(key), chosen))
    return INVALID if len(r.problems) > before else tuple(result)


def _carrier_name(r: _Reader, path: str, value: object) -> str | _Invalid:
    text = r.string(path, value)
    if isinstance(text, str) and not _CARRIER_NAME.fullmatch(text):
        return r.problem(
            path,
            "must be 1 to 64 characters of letters, digits, '.', '_' or '-' "
            f"(it is used in MQTT topics and metric labels), got {_show(text)}",
        )
    return text


def _first_use(r: _Reader, section: str, names: dict[str, int], index: int, name: object) -> bool:
    """Record ``<section>[index]``'s name; False for no name or a repeated one (a problem
    naming both entries is recorded for a repeat)."""
    if not isinstance(name, str):
        return False
    if name in names:
        r.problem(
            f"{section}[{index}].name",
            f"duplicate {section[:-1]} name {name!r} (also {section}[{names[name]}])",
        )
        return False
    names[name] = index
    return True


def _bind(r: _Reader, path: str, value: object) -> BindMode | _Invalid:
    chosen = r.choice(path, value, [m.value for m in BindMode])
    return chosen if isinstance(chosen, _Invalid) else BindMode(chosen)


def _carriers(r: _Reader, value: object) -> tuple[CarrierConfig, ...] | _Invalid:
    if value is None:
        return r.problem("carriers", "required: at least one carrier")
    if not isinstance(value, list):
        return r.problem("carriers", f"must be a list of carriers, got {_show(value)}")
    if not value:
        return r.problem("carriers", "at least one carrier is required")
    carriers: list[CarrierConfig] = []
    parsed: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        carrier, kwargs = _carrier(r, _join("carriers", index), item)
        parsed.append(kwargs)
        if isinstance(carrier, CarrierConfig):
            carriers.append(carrier)
    # Cross-carrier checks use whatever fields parsed, even in a carrier with other
    # problems, so every problem is reported in one run.
    names: dict[str, int] = {}
    owners: dict[str, tuple[str, int]] = {}
    for index, kwargs in enumerate(parsed):
        name = kwargs.get("name")
        if not isinstance(name, str) or not _first_use(r, "carriers", names, index, name):
            continue
        prefixes = kwargs.get("prefixes")
        for number, prefix in enumerate(prefixes if isinstance(prefixes, tuple) else ()):
            if not prefix:
                continue
            if prefix in owners and owners[prefix][0] != name:
                other, other_index = owners[prefix]
                r.problem(
                    f"carriers[{index}].prefixes[{number}]",
                    f"prefix {prefix!r} is claimed by both {other} (carriers[{other_index}]) "
                    f"and {name}",
                )
            owners.setdefault(prefix, (name, index))
    if len(carriers) < len(value):
        return INVALID
    return tuple(carriers)


def _tenant_senders(r: _Reader, path: str, value: object) -> tuple[str, ...] | _Invalid:
    if not isinstance(value, list) or not value:
        return r.problem(
            path, f'must be a non-empty list of senders (like [SHOPVN, "8079"]), got {_show(value)}'
        )
    before = len(r.problems)
    result: list[str] = []
    for index, item in enumerate(value):
        where = _join(path, index)
        if not isinstance(item, str):
            r.problem(where, f'must be a quoted string (like "8079"), got {_show(item)}')
            continue
        problem = sender_problem(item)
        if problem is not None:
            r.problem(where, f"{problem}, got {_show(item)}")
            continue
        if item in result:
            r.problem(where, f"duplicate sender {item!r}")
        result.append(item)
    return INVALID if len(r.problems) > before else tuple(result)


def _tenant_priorities(r: _Reader, path: str, value: object) -> tuple[str, ...] | _Invalid:
    if not isinstance(value, list) or not value:
        return r.problem(path, f"must be a non-empty list of high, normal, low, got {_show(value)}")
    before = len(r.problems)
    result: list[str] = []
    for index, item in enumerate(value):
        chosen = r.choice(_join(path, index), item, PRIORITY_NAMES)
        if isinstance(chosen, str) and chosen not in result:
            result.append(chosen)
    return INVALID if len(r.problems) > before else tuple(result)


def _tenant(r: _Reader, path: str, value: object) -> TenantConfig | _Invalid:
    data = r.mapping(path, value, _TENANT_KEYS)
    if isinstance(data, _Invalid):
        return data
    before = len(r.problems)
    if "name" not in data:
        r.problem(_join(path, "name"), "required")
    kwargs: dict[str, Any] = {}
    for key, check in _TENANT_CHECKS.items():
        if key in data:
            kwargs[key] = check(r, _join(path, key), data[key])
    if len(r.problems) > before:
        return INVALID
    return TenantConfig(**kwargs)


def _tenants(r: _Reader, value: object) -> tuple[TenantConfig, ...] | _Invalid:
    if value is None:
        return ()
    if not isinstance(value, list):
        return r.problem("tenants", f"must be a list of tenants, got {_show(value)}")
    tenants: list[TenantConfig] = []
    names: dict[str, int] = {}
    for index, item in enumerate(value):
        tenant = _tenant(r, _join("tenants", index), item)
        if isinstance(tenant, TenantConfig):
            tenants.append(tenant)
        # The duplicate check uses the name even of a tenant with other problems, so
        # every problem is reported in one run.
        _first_use(
            r, "tenants", names, index, item.get("name") if isinstance(item, Mapping) else None
        )
    return tuple(tenants) if len(tenants) == len(value) and len(names) == len(value) else INVALID


_Check = Callable[[_Reader, str, object], object]

#: One check per TenantConfig field. Tenant names share the carrier-name alphabet: they
#: are an MQTT topic level (no '/', '+', '#') and a metric label.
_TENANT_CHECKS: dict[str, _Check] = {
    "name": _carrier_name,
    "senders": _tenant_senders,
    "priorities": _tenant_priorities,
    "force_carrier": _Reader.boolean,
    "rate": lambda r, p, v: r.number(p, v),
    "daily_parts": lambda r, p, v: r.integer(p, v, 1),
    "max_queued": lambda r, p, v: r.integer(p, v, 1),
}
_TENANT_KEYS = tuple(_TENANT_CHECKS)

#: One check per MqttConfig field (``password`` is resolved by ``_Reader.secret``). A field
#: added to settings without a check here is refused as an unknown key, never ignored.
_MQTT_CHECKS: dict[str, _Check] = {
    "host": _Reader.string,
    "port": _Reader.port,
    "client_id": _Reader.string,
    "username": _Reader.optional_string,
    "tls": _Reader.tls,
    "submit_topic": _topic,
    "status_topic": _topic,
    "inbound_topic": _topic,
    "rejected_topic": _topic,
    "shared_group": _share_group,
    "keepalive": lambda r, p, v: r.integer(p, v, 0, 65535),
    "session_expiry": _expiry,
    "max_payload": lambda r, p, v: r.integer(p, v, 1, _MQTT_MAX_PAYLOAD),
    "response_prefixes": _response_prefixes,
    "max_correlation": lambda r, p, v: r.integer(p, v, 0, _MQTT_MAX_BINARY),
}

#: One check per CarrierConfig field (``password`` is resolved by ``_Reader.secret``).
_CARRIER_CHECKS: dict[str, _Check] = {
    "name": _carrier_name,
    "host": _Reader.string,
    "port": _Reader.port,
    "system_id": lambda r, p, v: r.c_string(p, v, 15),
    "system_type": lambda r, p, v: r.c_string(p, v, 12, empty=True),
    "address_range": lambda r, p, v: r.c_string(p, v, 40, empty=True),
    "bind": _bind,
    "sessions": lambda r, p, v: r.integer(p, v, 1, 64),
    "tps": lambda r, p, v: r.number(p, v),
    "window": lambda r, p, v: r.integer(p, v, 1, 1000),
    "source": _Reader.source,
    "prefixes": _prefixes,
    "coding": lambda r, p, v: r.choice(p, v, CODINGS),
    "concat": lambda r, p, v: r.choice(p, v, CONCATS),
    "max_parts": lambda r, p, v: r.integer(p, v, 1, 255),
    "registered_delivery": _Reader.boolean,
    "enquire_link_interval": lambda r, p, v: r.duration(p, v),
    "response_timeout": lambda r, p, v: r.duration(p, v),
    "bind_timeout": lambda r, p, v: r.duration(p, v),
    "frame_timeout": lambda r, p, v: r.duration(p, v, zero=True),
    "reconnect_min": lambda r, p, v: r.duration(p, v),
    "reconnect_max": lambda r, p, v: r.duration(p, v),
    "throttle_backoff": lambda r, p, v: r.duration(p, v),
    "throttle_backoff_max": lambda r, p, v: r.duration(p, v),
    "max_retries": lambda r, p, v: r.integer(p, v, 0, 1000),
    "retry_backoff": lambda r, p, v: r.duration(p, v, zero=True),
    "resend_on_timeout": _Reader.boolean,
    "receipt_hold": lambda r, p, v: r.duration(p, v, zero=True),
    "submit_id_base": lambda r, p, v: r.choice(p, v, ID_BASES),
    "receipt_id_base": lambda r, p, v: r.choice(p, v, ID_BASES),
    "tls": _Reader.tls,
    "error_policy": _error_policy,
}
_MQTT_KEYS = (*_MQTT_CHECKS, *_PASSWORD_KEYS)
_CARRIER_KEYS = (*_CARRIER_CHECKS, *_PASSWORD_KEYS)


# ---------------------------------------------------------------------- entry points


def parse_config(
    data: object,
    *,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate a decoded YAML document; relative file names are resolved from ``base_dir``."""
    r = _Reader(base_dir, os.environ if environ is None else environ)
    if data is None:
        raise ConfigError(["config: the file is empty; at least carriers: is required"])
    top = r.mapping("", data, _TOP_KEYS, hints=_HINTS)
    if isinstance(top, _Invalid):
        raise ConfigError(r.problems)
    parts: dict[str, Any] = {
        "mqtt": _mqtt(r, top.get("mqtt")),
        "store": _store(r, top.get("store")),
        "metrics": _metrics(r, top.get("metrics")),
        "log": _log(r, top.get("log")),
        "routing": _routing(r, top.get("routing")),
        "carriers": _carriers(r, top.get("carriers")),
        "tenants": _tenants(r, top.get("tenants")),
    }
    if "drain_timeout" in top:
        parts["drain_timeout"] = r.duration("drain_timeout", top["drain_timeout"])
    if r.problems:
        raise ConfigError(r.problems)
    return Config(**parts, warnings=tuple(r.warnings))


class _Loader(yaml.SafeLoader):
    """``safe_load`` that refuses duplicate keys, which YAML silently resolves to the last.

    Two ``port:`` lines in one carrier are a copy-paste slip, not a choice.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable key: SafeConstructor reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str | bytes) -> object:
    """Parse YAML; syntax errors become a ConfigError with line and column.

    Only the problem and position are reported, never the offending line: it may hold a
    password.
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
        message = exc.problem or "invalid YAML"
        if exc.context:
            message += f" ({exc.context})"
        raise ConfigError([f"{where}: {message}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"yaml: {type(exc).__name__}"]) from None


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file (file names inside it are relative to its directory)."""
    file = Path(path)
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror or exc}"]) from None
    return parse_config(load_yaml(text), base_dir=file.resolve().parent, environ=environ)


# ---------------------------------------------------------------------- summary


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def _password(secret: Secret | None) -> str:
    if secret is None:
        return "none"
    if secret.origin:
        return f"from {secret.origin}"
    return "***"


def _tls(tls: TlsConfig | None) -> str:
    if tls is None:
        return "off"
    parts = ["on"]
    if tls.ca_file:
        parts.append(f"ca {tls.ca_file}")
    if tls.cert_file:
        parts.append(f"client cert {tls.cert_file}")
    if not tls.verify:
        parts.append("NOT VERIFIED")
    return ", ".join(parts)


def _source(source: SourceConfig | None) -> str:
    if source is None:
        return "none (jobs must set from)"
    return f"{source.address} (ton {source.ton}, npi {source.npi})"


#: A carrier without prefixes is sent nothing: a forced carrier must claim the number too.
_NO_PREFIXES = "none (no job is routed here, even when forced)"


def summary(config: Config) -> str:
    """What the gateway will do with this config, for ``check-config``: no secret values."""
    m = config.mqtt
    lines = [
        f"mqtt: {m.host}:{m.port} client_id={m.client_id} tls={_tls(m.tls)}",
        f"  auth: user={m.username or 'none'} password={_password(m.password)}",
        f"  submit: {m.submit_topic}"
        + (f" (shared as $share/{m.shared_group}/{m.submit_topic})" if m.shared_group else ""),
        f"  status: {m.status_topic}/<id>   inbound: {m.inbound_topic}/<carrier>   "
        f"rejected: {m.rejected_topic}",
        f"  session expiry {_seconds(m.session_expiry)}, keepalive {m.keepalive}s, "
        f"max payload {m.max_payload} bytes, max correlation data {m.max_correlation} bytes",
        "  response topics: "
        + (", ".join(f"{p}/…" for p in m.response_prefixes) or "any outside the gateway's own"),
        f"store: {config.store.path} (finished jobs kept {_seconds(config.store.retention)}, "
        + ("texts kept too)" if config.store.keep_text else "texts blanked once submitted)"),
        "metrics: "
        + (f"http://{config.metrics.listen}/metrics" if config.metrics.listen else "disabled"),
        f"log: {config.log.level}, {config.log.format.value}",
        f"routing: country code {config.routing.country_code} "
        f"(0912345678 → {config.routing.country_code}912345678), international: "
        + (", ".join(f"+{c}" for c in config.routing.allow_international) or "refused"),
        f"carriers ({len(config.carriers)}):",
    ]
    for c in config.carriers:
        bind = c.bind.value
        lines += [
            f"  {c.name}: {c.host}:{c.port} tls={_tls(c.tls)} system_id={c.system_id} "
            f"password={_password(c.password)}",
            f"    {bind} × {c.sessions} session{'s' if c.sessions != 1 else ''}, "
            f"{c.tps:g} tps, window {c.window}, coding {c.coding}, concat {c.concat} "
            f"(max {c.max_parts} parts)",
            f"    source: {_source(c.source)}",
            f"    prefixes: {' '.join(c.prefixes) if c.prefixes else _NO_PREFIXES}",
        ]
    if config.tenants:
        lines.append(f"tenants ({len(config.tenants)}):")
    for t in config.tenants:
        topic = m.submit_topic if t.name == "default" else f"{m.submit_topic}/{t.name}"
        lines.append(
            f"  {t.name}: {topic}, senders {' '.join(t.senders) if t.senders else 'any'}, "
            f"priorities {' '.join(t.priorities) if t.priorities else 'any'}, "
            f"force_carrier {'yes' if t.force_carrier else 'no'}, "
            f"rate {f'{t.rate:g}/s' if t.rate else 'unlimited'}, "
            f"daily_parts {t.daily_parts or 'unlimited'}, max_queued {t.max_queued or 'unlimited'}"
        )
    table = Router(config.carriers).table()
    lines.append(f"routes ({len(table)}, longest prefix wins):")
    lines += [f"  {prefix:<8} → {name}" for prefix, name in table]
    return "\n".join(lines)
