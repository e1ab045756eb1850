"""Each config section (mqtt, store, metrics, log, routing, carriers, tenants) checked field
by field with a :class:`~smppgw.config.reader.Reader`, into the dataclasses of
:mod:`smppgw.config.model`.

YAML keys are the dataclass field names, plus ``password_env`` / ``password_file``,
``source {address, ton, npi}`` and ``tls {ca_file, cert_file, key_file, verify}``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any
from zoneinfo import available_timezones

from smppgw.config.model import (
    BindMode,
    CarrierConfig,
    ClusterConfig,
    ConsentConfig,
    CtlConfig,
    LogConfig,
    LogFormat,
    MetricsConfig,
    MqttConfig,
    ReadyPolicy,
    RoutingConfig,
    Secret,
    SourceConfig,
    StoreBackend,
    StoreConfig,
    TenantConfig,
)
from smppgw.config.reader import (
    _PASSWORD_KEYS,
    INVALID,
    Invalid,
    Reader,
    join,
    parse_listen,
    show,
)
from smppgw.engine.policy import Action, parse_status
from smppgw.pipeline.envelope import own_topics, under
from smppgw.pipeline.keywords import normalize_keyword
from smppgw.pipeline.marketing import parse_hours, zone
from smppgw.pipeline.routing import is_digits, mo_number, numeric_sender, sender_problem

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
CODINGS = ("auto", "gsm", "latin1", "ucs2")
CONCATS = ("udh8", "udh16", "sar", "payload")
ID_BASES = ("string", "hex", "decimal")
WRITER_MODES = ("process", "thread", "auto")
_STORE_KEYS = (
    "path",
    "retention",
    "commit_interval",
    "writer",
    "keep_text",
    "backend",
    "dsn",
    "dsn_env",
    "dsn_file",
    "lease",
)
_CLUSTER_KEYS = ("node_id", "redis", "redis_env", "redis_file")
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_METRICS_KEYS = ("listen", "ready_policy")
_LOG_KEYS = ("level", "format")
_ROUTING_KEYS = ("country_code", "allow_international", "ported_ttl", "ported_file")
_CTL_KEYS = ("socket", "allow_uids")
#: Longest UNIX socket path (``sun_path`` holds 108 bytes with the NUL).
_SUN_PATH_MAX = 107
_CARRIER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PRIORITY_NAMES = ("high", "normal", "low")
_MQTT_MAX_PAYLOAD = 268_435_455
_MQTT_MAX_EXPIRY = 0xFFFFFFFF
#: MQTT 5 Binary Data (Correlation Data) holds at most this many octets.
_MQTT_MAX_BINARY = 65535
_SOURCE_KEYS = ("address", "ton", "npi")


TOP_KEYS = (
    "mqtt",
    "store",
    "cluster",
    "metrics",
    "log",
    "routing",
    "carriers",
    "tenants",
    "ctl",
    "consent",
    "drain_timeout",
)
#: Keys that are often put in the wrong section.
HINTS = {
    "country_code": "it belongs in routing",
    "level": "it belongs in log",
    "listen": "it belongs in metrics",
    "submit_topic": "it belongs in mqtt",
    "prefixes": "it belongs in a carrier",
}


def _topic(r: Reader, path: str, value: object) -> str | Invalid:
    text = r.string(path, value)
    if isinstance(text, Invalid):
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


def _mqtt(r: Reader, value: object) -> MqttConfig | Invalid:
    path = "mqtt"
    data = r.mapping(path, {} if value is None else value, _MQTT_KEYS, hints=HINTS)
    if isinstance(data, Invalid):
        return data
    before = len(r.problems)
    kwargs: dict[str, Any] = {}
    for key, check in _MQTT_CHECKS.items():
        if key in data:
            kwargs[key] = check(r, join(path, key), data[key])
    kwargs["password"] = r.secret(path, data, required=False)
    if len(r.problems) > before:
        return INVALID
    config = MqttConfig(**kwargs)
    for index, prefix in enumerate(config.response_prefixes):
        for root in own_topics(config):
            if under(prefix, root):
                r.problem(
                    join(join(path, "response_prefixes"), index),
                    f"{prefix!r} is inside the gateway's own topic tree ({root}): "
                    "replies there are always refused",
                )
                break
    return INVALID if len(r.problems) > before else config


def _response_prefixes(r: Reader, path: str, value: object) -> tuple[str, ...] | Invalid:
    """Topic prefixes (``shop/replies``) a job's Response Topic must lie under."""
    if value is None:
        return ()
    return r.distinct(path, value, _topic, kind="topic prefix", example='["shop/replies"]')


def _share_group(r: Reader, path: str, value: object) -> str | Invalid | None:
    if value is None:
        return None
    text = r.string(path, value)
    if isinstance(text, str) and any(c in text for c in "/+#\x00"):
        return r.problem(path, "must not contain /, +, # or NUL")
    return text


def _expiry(r: Reader, path: str, value: object) -> int | Invalid:
    seconds = r.duration(path, value, zero=True)
    if isinstance(seconds, Invalid):
        return seconds
    if seconds > _MQTT_MAX_EXPIRY:
        return r.problem(path, f"must be at most {_MQTT_MAX_EXPIRY} seconds (MQTT 5 limit)")
    return round(seconds)


def _store(r: Reader, value: object) -> StoreConfig | Invalid:
    data = r.mapping("store", {} if value is None else value, _STORE_KEYS)
    if isinstance(data, Invalid):
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
    if "writer" in data:
        kwargs["writer"] = r.choice("store.writer", data["writer"], WRITER_MODES)
    if "keep_text" in data:
        kwargs["keep_text"] = r.boolean("store.keep_text", data["keep_text"])
    backend = StoreBackend.SQLITE
    if "backend" in data:
        chosen = r.choice("store.backend", data["backend"], tuple(b.value for b in StoreBackend))
        if not isinstance(chosen, Invalid):
            backend = kwargs["backend"] = StoreBackend(chosen)
    dsn = r.secret("store", data, required=backend is StoreBackend.POSTGRES, name="dsn")
    if isinstance(dsn, Secret):
        if backend is not StoreBackend.POSTGRES:
            r.problem("store.dsn", "is only used with backend: postgres")
        elif not dsn.reveal().startswith(("postgresql://", "postgres://")):
            # Never quote the value: it may hold a password.
            r.problem("store.dsn", "must be a URL starting with postgresql:// (value not shown)")
        else:
            kwargs["dsn"] = dsn
    if "lease" in data:
        lease = r.duration("store.lease", data["lease"])
        if isinstance(lease, float | int) and lease < 1:
            r.problem("store.lease", f"must be at least 1s, got {show(data['lease'])}")
        kwargs["lease"] = lease
    return INVALID if len(r.problems) > before else StoreConfig(**kwargs)


def _cluster(r: Reader, value: object) -> ClusterConfig | Invalid:
    data = r.mapping("cluster", {} if value is None else value, _CLUSTER_KEYS)
    if isinstance(data, Invalid):
        return data
    before = len(r.problems)
    kwargs: dict[str, Any] = {}
    if "node_id" in data:
        node = data["node_id"]
        if not isinstance(node, str) or not _NODE_ID.fullmatch(node):
            r.problem("cluster.node_id", f"must be 1-64 of A-Z a-z 0-9 . _ - , got {show(node)}")
        kwargs["node_id"] = node
    url = r.secret("cluster", data, required=False, name="redis")
    if isinstance(url, Secret):
        if not url.reveal().startswith(("redis://", "rediss://", "unix://")):
            r.problem(
                "cluster.redis", "must be a redis://, rediss:// or unix:// URL (value not shown)"
            )
        kwargs["redis"] = url
    return INVALID if len(r.problems) > before else ClusterConfig(**kwargs)


def _metrics(r: Reader, value: object) -> MetricsConfig | Invalid:
    data = r.mapping("metrics", {} if value is None else value, _METRICS_KEYS)
    if isinstance(data, Invalid):
        return data
    before = len(r.problems)
    kwargs: dict[str, Any] = {}
    if "listen" in data:
        listen = data["listen"]
        if listen is None or (isinstance(listen, str) and _serveable(listen)):
            kwargs["listen"] = listen
        else:
            r.problem(
                "metrics.listen",
                f'must be "host:port" (like "127.0.0.1:9464") or null, got {show(listen)}',
            )
    if "ready_policy" in data:
        options = [p.value for p in ReadyPolicy]
        chosen = r.choice("metrics.ready_policy", data["ready_policy"], options)
        if not isinstance(chosen, Invalid):
            kwargs["ready_policy"] = ReadyPolicy(chosen)
    return INVALID if len(r.problems) > before else MetricsConfig(**kwargs)


def _serveable(listen: str) -> bool:
    """A listen address the daemon can be scraped at: a host and a fixed port (not 0)."""
    try:
        return parse_listen(listen)[1] != 0
    except ValueError:
        return False


def _log(r: Reader, value: object) -> LogConfig | Invalid:
    data = r.mapping("log", {} if value is None else value, _LOG_KEYS)
    if isinstance(data, Invalid):
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
        kwargs["format"] = chosen if isinstance(chosen, Invalid) else LogFormat(chosen)
    return INVALID if len(r.problems) > before else LogConfig(**kwargs)


def _routing(r: Reader, value: object) -> RoutingConfig | Invalid:
    data = r.mapping("routing", {} if value is None else value, _ROUTING_KEYS)
    if isinstance(data, Invalid):
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
    if "ported_ttl" in data:
        kwargs["ported_ttl"] = r.duration("routing.ported_ttl", data["ported_ttl"])
    if data.get("ported_file") is not None:
        kwargs["ported_file"] = r.path("routing.ported_file", data["ported_file"], must_exist=True)
    return INVALID if len(r.problems) > before else RoutingConfig(**kwargs)


def _ctl(r: Reader, value: object) -> CtlConfig | Invalid:
    data = r.mapping("ctl", {} if value is None else value, _CTL_KEYS)
    if isinstance(data, Invalid):
        return data
    before = len(r.problems)
    kwargs: dict[str, Any] = {}
    if data.get("socket", "") is None:
        kwargs["socket"] = None
    elif "socket" in data:
        path = r.path("ctl.socket", data["socket"], must_exist=False)
        if isinstance(path, str) and len(path.encode()) > _SUN_PATH_MAX:
            r.problem("ctl.socket", f"must be at most {_SUN_PATH_MAX} bytes (a UNIX socket path)")
        kwargs["socket"] = path
    if data.get("allow_uids") is not None:
        kwargs["allow_uids"] = _uids(r, "ctl.allow_uids", data["allow_uids"])
    return INVALID if len(r.problems) > before else CtlConfig(**kwargs)


def _uids(r: Reader, path: str, value: object) -> tuple[int, ...] | Invalid:
    if not isinstance(value, list):
        return r.problem(path, f"must be a list of uids like [1000], got {show(value)}")
    uids = [r.integer(join(path, index), item, 0, 0xFFFFFFFE) for index, item in enumerate(value)]
    return tuple(uid for uid in uids if isinstance(uid, int))


def _country_code(r: Reader, path: str, code: object) -> str | Invalid:
    if isinstance(code, str) and is_digits(code) and len(code) <= 3 and not code.startswith("0"):
        return code
    return r.problem(
        path, f'must be 1 to 3 digits as a quoted string (like "84"), got {show(code)}'
    )


def _country_codes(r: Reader, path: str, value: object, home: object) -> Any:
    """Country codes international destinations may have (``["1", "44"]``)."""

    def international(r: Reader, where: str, item: object) -> str | Invalid:
        code = _country_code(r, where, item)
        if code == home:
            return r.problem(
                where, f"{code!r} is routing.country_code: national numbers need no entry"
            )
        return code

    return r.distinct(path, value, international, kind="country code", example='["1", "44"]')


def _prefix(r: Reader, path: str, value: object) -> str | Invalid:
    if not isinstance(value, str):
        return r.problem(
            path, f'must be a quoted string of digits (like "8486"), got {show(value)}'
        )
    if value.startswith("+") or (value.startswith("0") and is_digits(value)):
        return r.problem(
            path,
            f'must be in E.164 form without + or a leading 0 (like "8486"), got {show(value)}',
        )
    if not is_digits(value) or len(value) > 15:
        return r.problem(path, f"must be 1 to 15 digits, got {show(value)}")
    return value


def _prefixes(r: Reader, path: str, value: object) -> tuple[str, ...] | Invalid:
    if value is None:
        return ()
    if not isinstance(value, list):
        return r.problem(
            path, f'must be a list of prefixes (like ["8486", "8496"]), got {show(value)}'
        )
    result: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        prefix = _prefix(r, join(path, index), item)
        if isinstance(prefix, Invalid):
            result.append("")  # keeps indexes aligned for the cross-carrier check
            continue
        if prefix in seen:
            r.problem(join(path, index), f"duplicate prefix {prefix!r}")
        seen.add(prefix)
        result.append(prefix)
    # With a problem recorded the carrier is not built, so the "" placeholders never escape.
    return tuple(result)


def _carrier(r: Reader, path: str, value: object) -> tuple[CarrierConfig | Invalid, dict[str, Any]]:
    """The carrier, and the fields that parsed (for the cross-carrier checks)."""
    data = r.mapping(path, value, _CARRIER_KEYS, hints=HINTS)
    if isinstance(data, Invalid):
        return data, {}
    before = len(r.problems)
    for key in ("name", "host", "port", "system_id"):
        if key not in data:
            r.problem(join(path, key), "required")
    kwargs: dict[str, Any] = {}
    for key, check in _CARRIER_CHECKS.items():
        if key in data:
            kwargs[key] = check(r, join(path, key), data[key])
    password = r.secret(path, data, required=True)
    if isinstance(password, Secret):
        if "\x00" in password.reveal() or any(ord(c) > 0xFF for c in password.reveal()):
            r.problem(
                join(path, "password"), "must be Latin-1 text without NUL (SMPP C-Octet String)"
            )
        kwargs["password"] = password
    _ordered(r, path, kwargs, "reconnect_min", "reconnect_max", CarrierConfig)
    _ordered(r, path, kwargs, "throttle_backoff", "throttle_backoff_max", CarrierConfig)
    if len(r.problems) > before:
        return INVALID, kwargs
    return CarrierConfig(**kwargs), kwargs


def _ordered(r: Reader, path: str, kwargs: dict[str, Any], low: str, high: str, cls: Any) -> None:
    """``low`` must not exceed ``high`` (either may be the default)."""
    defaults = {f.name: f.default for f in fields(cls)}
    low_value = kwargs.get(low, defaults[low])
    high_value = kwargs.get(high, defaults[high])
    numbers = isinstance(low_value, float | int) and isinstance(high_value, float | int)
    if numbers and low_value > high_value:
        r.problem(
            join(path, high if high in kwargs else low),
            f"{high} ({high_value:g}s) must not be less than {low} ({low_value:g}s)",
        )


def _error_policy(r: Reader, path: str, value: object) -> tuple[tuple[str, str], ...] | Invalid:
    """``{ESME_RSYSERR: permanent, 0x58: throttle}``: per-status overrides of the submit error
    policy (:mod:`smppgw.engine.policy`)."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        return r.problem(
            path,
            f"must be a mapping of status to action (like ESME_RSYSERR: permanent), "
            f"got {show(value)}",
        )
    before = len(r.problems)
    result: list[tuple[str, str]] = []
    seen: dict[int, str] = {}
    actions = [a.value for a in Action]
    for key, action in value.items():
        where = join(path, str(key))
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


def _failover_on(r: Reader, path: str, value: object) -> tuple[int, ...] | Invalid:
    """``[ESME_RINVDSTADR, 0x0B]``: submit_sm statuses that send a job on to the next
    carrier of its chain (names or numbers, as in ``error_policy``)."""
    if not isinstance(value, list):
        return r.problem(
            path, f"must be a list of statuses like [ESME_RINVDSTADR], got {show(value)}"
        )
    before = len(r.problems)
    result: list[int] = []
    for index, item in enumerate(value):
        where = join(path, index)
        if isinstance(item, bool) or not isinstance(item, str | int):
            r.problem(
                where, "must be an SMPP command_status (a name like ESME_RINVDSTADR, or a number)"
            )
            continue
        try:
            status = parse_status(item)
        except ValueError as exc:
            r.problem(where, str(exc))
            continue
        if status == 0:
            r.problem(where, "ESME_ROK is success, not a refusal")
        elif status in result:
            r.problem(where, f"duplicate status {show(item)}")
        result.append(status)
    return INVALID if len(r.problems) > before else tuple(result)


def _failover(r: Reader, path: str, value: object) -> tuple[str, ...] | Invalid:
    """``[vinaphone, mobifone]``: carrier names, checked against the carriers later."""
    return r.distinct(path, value, _carrier_name, kind="carrier", example="[vinaphone, mobifone]")


def _check_failover(r: Reader, parsed: list[dict[str, Any]], names: dict[str, int]) -> None:
    """Each ``failover`` entry names another configured carrier."""
    for index, kwargs in enumerate(parsed):
        chain = kwargs.get("failover")
        name = kwargs.get("name")
        for number, other in enumerate(chain if isinstance(chain, tuple) else ()):
            where = f"carriers[{index}].failover[{number}]"
            if other == name:
                r.problem(
                    where, f"{other!r} is this carrier itself; list the carriers to try after it"
                )
            elif other not in names:
                known = ", ".join(sorted(names)) or "none"
                r.problem(where, f"unknown carrier {other!r} (known: {known})")


def _carrier_name(r: Reader, path: str, value: object) -> str | Invalid:
    text = r.string(path, value)
    if isinstance(text, str) and not _CARRIER_NAME.fullmatch(text):
        return r.problem(
            path,
            "must be 1 to 64 characters of letters, digits, '.', '_' or '-' "
            f"(it is used in MQTT topics and metric labels), got {show(text)}",
        )
    return text


def _first_use(r: Reader, section: str, names: dict[str, int], index: int, name: object) -> bool:
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


def _bind(r: Reader, path: str, value: object) -> BindMode | Invalid:
    chosen = r.choice(path, value, [m.value for m in BindMode])
    return chosen if isinstance(chosen, Invalid) else BindMode(chosen)


def _carriers(r: Reader, value: object) -> tuple[CarrierConfig, ...] | Invalid:
    if value is None:
        return r.problem("carriers", "required: at least one carrier")
    if not isinstance(value, list):
        return r.problem("carriers", f"must be a list of carriers, got {show(value)}")
    if not value:
        return r.problem("carriers", "at least one carrier is required")
    carriers: list[CarrierConfig] = []
    parsed: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        carrier, kwargs = _carrier(r, join("carriers", index), item)
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
                # Not an error: the first carrier in config order routes the prefix, the
                # other reaches it through failover (README, "Failover").
                other, other_index = owners[prefix]
                r.warnings.append(
                    f"carriers[{index}].prefixes[{number}]: prefix {prefix!r} is claimed by "
                    f"both {other} (carriers[{other_index}]) and {name}; {other} routes it "
                    f"(first in config order), {name} takes its jobs only through failover"
                )
            owners.setdefault(prefix, (name, index))
    _check_failover(r, parsed, names)
    if len(carriers) < len(value):
        return INVALID
    return tuple(carriers)


def _tenant_senders(r: Reader, path: str, value: object) -> tuple[str, ...] | Invalid:
    if not isinstance(value, list) or not value:
        return r.problem(
            path, f'must be a non-empty list of senders (like [SHOPVN, "8079"]), got {show(value)}'
        )
    before = len(r.problems)
    result: list[str] = []
    for index, item in enumerate(value):
        where = join(path, index)
        if not isinstance(item, str):
            r.problem(where, f'must be a quoted string (like "8079"), got {show(item)}')
            continue
        problem = sender_problem(item)
        if problem is not None:
            r.problem(where, f"{problem}, got {show(item)}")
            continue
        if item in result:
            r.problem(where, f"duplicate sender {item!r}")
        result.append(item)
    return INVALID if len(r.problems) > before else tuple(result)


def _tenant_priorities(r: Reader, path: str, value: object) -> tuple[str, ...] | Invalid:
    if not isinstance(value, list) or not value:
        return r.problem(path, f"must be a non-empty list of high, normal, low, got {show(value)}")
    before = len(r.problems)
    result: list[str] = []
    for index, item in enumerate(value):
        chosen = r.choice(join(path, index), item, PRIORITY_NAMES)
        if isinstance(chosen, str) and chosen not in result:
            result.append(chosen)
    return INVALID if len(r.problems) > before else tuple(result)


def _tenant_numbers(r: Reader, path: str, value: object) -> tuple[str, ...] | Invalid:
    """Short codes (3-8 digits, kept as written) and long numbers (normalised like a
    destination: ``0912…``, ``+84912…`` and ``84912…`` are one number)."""
    if not isinstance(value, list) or not value:
        return r.problem(
            path,
            f'must be a non-empty list of numbers (like ["8079", "84912345678"]), '
            f"got {show(value)}",
        )
    before = len(r.problems)
    result: list[str] = []
    for index, item in enumerate(value):
        where = join(path, index)
        if not isinstance(item, str | int) or isinstance(item, bool):
            r.problem(where, f'must be a quoted number (like "8079"), got {show(item)}')
            continue
        # Country code "0" only for the check: read_sections normalises with the real one.
        number = str(item).strip()
        if mo_number(number, "0") is None:
            r.problem(where, f"must be a short code or phone number (digits), got {show(item)}")
            continue
        if number in result:
            r.problem(where, f"duplicate number {item!r}")
        result.append(number)
    return INVALID if len(r.problems) > before else tuple(result)


def _tenant_keywords(r: Reader, path: str, value: object) -> tuple[str, ...] | Invalid:
    """First words, compared in ``normalize_keyword`` form (case, diacritics and
    punctuation ignored): each must be one word with a letter or digit in it."""
    if not isinstance(value, list) or not value:
        return r.problem(
            path, f"must be a non-empty list of words (like [SHOP1]), got {show(value)}"
        )
    before = len(r.problems)
    result: list[str] = []
    for index, item in enumerate(value):
        where = join(path, index)
        if not isinstance(item, str | int) or isinstance(item, bool):
            r.problem(where, f"must be a word, got {show(item)}")
            continue
        text = str(item)
        normal = normalize_keyword(text)
        if not normal:
            r.problem(where, f"has no letter or digit, got {show(item)}")
            continue
        if len(text.split()) != 1:
            r.problem(
                where,
                f"must be one word (it is matched against an MO's first word), got {show(item)}",
            )
            continue
        if normal in result:
            r.problem(where, f"duplicate keyword {item!r} (same as another once normalised)")
        result.append(normal)
    return INVALID if len(r.problems) > before else tuple(result)


def _tenant_mo_owners(r: Reader, tenants: tuple[TenantConfig, ...], country_code: str) -> None:
    """A number or keyword may belong to one tenant only: an MO has one destination.
    Numbers are compared as MO routing compares them (``0912…`` is ``84912…``)."""
    for field in ("numbers", "keywords"):
        owners: dict[str, tuple[str, int]] = {}
        for index, tenant in enumerate(tenants):
            for number, raw in enumerate(getattr(tenant, field)):
                item = raw if field == "keywords" else mo_number(raw, country_code) or raw
                if item in owners:
                    other, other_index = owners[item]
                    r.problem(
                        f"tenants[{index}].{field}[{number}]",
                        f"{item!r} belongs to both {other} (tenants[{other_index}]) and "
                        f"{tenant.name}",
                    )
                owners.setdefault(item, (tenant.name, index))


def _tenant_not_carrier(
    r: Reader, tenants: tuple[TenantConfig, ...], carriers: tuple[CarrierConfig, ...]
) -> None:
    """A tenant's MO go to ``sms/inbound/<tenant>/<carrier>``, the default tenant's to
    ``sms/inbound/<carrier>``: a tenant named like a carrier would make them overlap."""
    names = {carrier.name for carrier in carriers}
    for index, tenant in enumerate(tenants):
        if tenant.name in names:
            r.problem(
                f"tenants[{index}].name",
                f"{tenant.name!r} is also a carrier's name: sms/inbound/{tenant.name}/... "
                "would mix its MO with that carrier's",
            )


def _tenant(r: Reader, path: str, value: object) -> TenantConfig | Invalid:
    data = r.mapping(path, value, _TENANT_KEYS)
    if isinstance(data, Invalid):
        return data
    before = len(r.problems)
    if "name" not in data:
        r.problem(join(path, "name"), "required")
    kwargs: dict[str, Any] = {}
    for key, check in _TENANT_CHECKS.items():
        if key in data:
            kwargs[key] = check(r, join(path, key), data[key])
    if len(r.problems) > before:
        return INVALID
    return TenantConfig(**kwargs)


def _tenants(r: Reader, value: object) -> tuple[TenantConfig, ...] | Invalid:
    if value is None:
        return ()
    if not isinstance(value, list):
        return r.problem("tenants", f"must be a list of tenants, got {show(value)}")
    tenants: list[TenantConfig] = []
    names: dict[str, int] = {}
    for index, item in enumerate(value):
        tenant = _tenant(r, join("tenants", index), item)
        if isinstance(tenant, TenantConfig):
            tenants.append(tenant)
        # The duplicate check uses the name even of a tenant with other problems, so
        # every problem is reported in one run.
        _first_use(
            r, "tenants", names, index, item.get("name") if isinstance(item, Mapping) else None
        )
    return tuple(tenants) if len(tenants) == len(value) and len(names) == len(value) else INVALID


def _source(r: Reader, path: str, value: object) -> SourceConfig | Invalid | None:
    """``source: SHOPVN`` or ``{address, ton, npi}``; TON/NPI default from the address."""
    if value is None:
        return None
    data: dict[str, Any] | Invalid
    data = {"address": value} if isinstance(value, str) else r.mapping(path, value, _SOURCE_KEYS)
    if isinstance(data, Invalid):
        return data
    before = len(r.problems)
    if "address" not in data:
        return r.problem(join(path, "address"), "required")
    address = r.string(join(path, "address"), data["address"])
    if isinstance(address, str):
        problem = sender_problem(address)
        if problem is not None:
            r.problem(join(path, "address"), problem)
        address = numeric_sender(address) or address
    numeric = isinstance(address, str) and is_digits(address)
    ton = r.integer(join(path, "ton"), data.get("ton", 1 if numeric else 5), 0, 255)
    npi = r.integer(join(path, "npi"), data.get("npi", 1 if numeric else 0), 0, 255)
    if len(r.problems) > before or isinstance(address, Invalid):
        return INVALID
    return SourceConfig(address=address, ton=ton, npi=npi)


def _timezone(r: Reader, path: str, value: object) -> str | Invalid:
    text = r.string(path, value)
    if isinstance(text, Invalid):
        return text
    try:
        zone(text)
    except ValueError as exc:
        message = str(exc)
        close = difflib.get_close_matches(text, sorted(available_timezones()), n=1, cutoff=0.8)
        if close:
            message += f"; did you mean {close[0]}?"
        return r.problem(path, message)
    return text


def _hours(r: Reader, path: str, value: object) -> str | Invalid:
    text = r.string(path, value)
    if isinstance(text, Invalid):
        return text
    try:
        parse_hours(text)
    except ValueError as exc:
        return r.problem(path, str(exc))
    return text.strip()


def _keywords(r: Reader, path: str, value: object) -> tuple[str, ...] | Invalid:
    """A list of MO keywords; each must keep a letter or digit once normalised."""

    def keyword(r: Reader, where: str, item: object) -> str | Invalid:
        text = r.string(where, item)
        if isinstance(text, str) and not normalize_keyword(text):
            return r.problem(where, f"{text!r} has no letter or digit: it would match nothing")
        return text

    if value is None:
        return ()
    return r.distinct(path, value, keyword, kind="keyword", example="[STOP, HUY]")


def _reply(r: Reader, path: str, value: object) -> str | Invalid | None:
    return None if value is None else r.string(path, value)


def _consent(r: Reader, value: object) -> ConsentConfig | Invalid:
    data = r.mapping("consent", {} if value is None else value, _CONSENT_KEYS)
    if isinstance(data, Invalid):
        return data
    before = len(r.problems)
    kwargs: dict[str, Any] = {}
    for key, check in _CONSENT_CHECKS.items():
        if key in data:
            kwargs[key] = check(r, join("consent", key), data[key])
    if len(r.problems) > before:
        return INVALID
    config = ConsentConfig(**kwargs)
    # One normalised keyword, one meaning: "Hủy" in optout and "HUY" in optin is a typo.
    owners: dict[str, str] = {}
    for key in ("optout_keywords", "optin_keywords", "help_keywords"):
        for index, keyword in enumerate(getattr(config, key)):
            norm = normalize_keyword(keyword)
            where = join(join("consent", key), index)
            if norm in owners:
                r.problem(where, f"{keyword!r} is the same keyword as {owners[norm]}")
            owners.setdefault(norm, where)
    return INVALID if len(r.problems) > before else config


_Check = Callable[[Reader, str, object], object]

#: One check per ConsentConfig field.
_CONSENT_CHECKS: dict[str, _Check] = {
    "timezone": _timezone,
    "marketing_hours": _hours,
    "marketing_daily_cap": lambda r, p, v: r.integer(p, v, 0, 1000),
    "cap_action": lambda r, p, v: r.choice(p, v, ("reject", "defer")),
    "marketing_prefix": lambda r, p, v: r.string(p, v, empty=True),
    "marketing_footer": lambda r, p, v: r.string(p, v, empty=True),
    "optout_keywords": _keywords,
    "optin_keywords": _keywords,
    "optout_reply": _reply,
    "help_keywords": _keywords,
    "help_reply": _reply,
    "mo_is_optin": Reader.boolean,
}
_CONSENT_KEYS = tuple(_CONSENT_CHECKS)

#: One check per TenantConfig field. Tenant names share the carrier-name alphabet: they
#: are an MQTT topic level (no '/', '+', '#') and a metric label.
_TENANT_CHECKS: dict[str, _Check] = {
    "name": _carrier_name,
    "senders": _tenant_senders,
    "priorities": _tenant_priorities,
    "force_carrier": Reader.boolean,
    "rate": lambda r, p, v: r.number(p, v),
    "daily_parts": lambda r, p, v: r.integer(p, v, 1),
    "max_queued": lambda r, p, v: r.integer(p, v, 1),
    "numbers": _tenant_numbers,
    "keywords": _tenant_keywords,
}
_TENANT_KEYS = tuple(_TENANT_CHECKS)

#: One check per MqttConfig field (``password`` is resolved by ``Reader.secret``). A field
#: added to settings without a check here is refused as an unknown key, never ignored.
_MQTT_CHECKS: dict[str, _Check] = {
    "host": Reader.string,
    "port": Reader.port,
    "client_id": Reader.string,
    "username": Reader.optional_string,
    "tls": Reader.tls,
    "submit_topic": _topic,
    "status_topic": _topic,
    "inbound_topic": _topic,
    "rejected_topic": _topic,
    "cancel_topic": _topic,
    "consent_topic": _topic,
    "reply_topic": _topic,
    "shared_group": _share_group,
    "keepalive": lambda r, p, v: r.integer(p, v, 0, 65535),
    "session_expiry": _expiry,
    "max_payload": lambda r, p, v: r.integer(p, v, 1, _MQTT_MAX_PAYLOAD),
    "response_prefixes": _response_prefixes,
    "max_correlation": lambda r, p, v: r.integer(p, v, 0, _MQTT_MAX_BINARY),
}

#: One check per CarrierConfig field (``password`` is resolved by ``Reader.secret``).
_CARRIER_CHECKS: dict[str, _Check] = {
    "name": _carrier_name,
    "host": Reader.string,
    "port": Reader.port,
    "system_id": lambda r, p, v: r.c_string(p, v, 15),
    "system_type": lambda r, p, v: r.c_string(p, v, 12, empty=True),
    "address_range": lambda r, p, v: r.c_string(p, v, 40, empty=True),
    "bind": _bind,
    "sessions": lambda r, p, v: r.integer(p, v, 1, 64),
    "max_binds": lambda r, p, v: r.integer(p, v, 1, 1000),
    "tps": lambda r, p, v: r.number(p, v),
    "window": lambda r, p, v: r.integer(p, v, 1, 1000),
    "source": _source,
    "prefixes": _prefixes,
    "coding": lambda r, p, v: r.choice(p, v, CODINGS),
    "concat": lambda r, p, v: r.choice(p, v, CONCATS),
    "max_parts": lambda r, p, v: r.integer(p, v, 1, 255),
    "registered_delivery": Reader.boolean,
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
    "resend_on_timeout": Reader.boolean,
    "receipt_hold": lambda r, p, v: r.duration(p, v, zero=True),
    "submit_id_base": lambda r, p, v: r.choice(p, v, ID_BASES),
    "receipt_id_base": lambda r, p, v: r.choice(p, v, ID_BASES),
    "tls": Reader.tls,
    "error_policy": _error_policy,
    "failover": _failover,
    "failover_on": _failover_on,
    "failover_after": lambda r, p, v: r.duration(p, v, zero=True),
    "failover_after_high": lambda r, p, v: r.duration(p, v, zero=True),
}
_MQTT_KEYS = (*_MQTT_CHECKS, *_PASSWORD_KEYS)
_CARRIER_KEYS = (*_CARRIER_CHECKS, *_PASSWORD_KEYS)


# ---------------------------------------------------------------------- entry points


def read_sections(r: Reader, top: dict[str, Any]) -> dict[str, Any]:
    """Every section of the top-level mapping, checked: the keyword arguments of Config."""
    parts: dict[str, Any] = {
        "mqtt": _mqtt(r, top.get("mqtt")),
        "store": _store(r, top.get("store")),
        "cluster": _cluster(r, top.get("cluster")),
        "metrics": _metrics(r, top.get("metrics")),
        "log": _log(r, top.get("log")),
        "routing": _routing(r, top.get("routing")),
        "carriers": _carriers(r, top.get("carriers")),
        "tenants": _tenants(r, top.get("tenants")),
        "ctl": _ctl(r, top.get("ctl")),
        "consent": _consent(r, top.get("consent")),
    }
    tenants, routing, carriers = parts["tenants"], parts["routing"], parts["carriers"]
    if isinstance(tenants, tuple) and isinstance(routing, RoutingConfig):
        before = len(r.problems)
        _tenant_mo_owners(r, tenants, routing.country_code)
        if isinstance(carriers, tuple):
            _tenant_not_carrier(r, tenants, carriers)
        if len(r.problems) > before:
            parts["tenants"] = INVALID
    if "drain_timeout" in top:
        parts["drain_timeout"] = r.duration("drain_timeout", top["drain_timeout"])
    _cluster_only(r, parts)
    return parts


def _cluster_only(r: Reader, parts: dict[str, Any]) -> None:
    """``max_binds`` is held in the shared store: only with ``store.backend: postgres``."""
    store, carriers = parts["store"], parts["carriers"]
    if isinstance(store, Invalid) or isinstance(carriers, Invalid):
        return
    if store.backend is StoreBackend.POSTGRES:
        return
    for i, carrier in enumerate(carriers):
        if isinstance(carrier, CarrierConfig) and carrier.max_binds is not None:
            r.problem(
                f"carriers[{i}].max_binds",
                "needs store.backend: postgres (one gateway's binds are its sessions)",
            )
