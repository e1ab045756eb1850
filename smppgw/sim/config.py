"""Simulator settings: accounts, faults, receipt behaviour, and how they are read.

The simulator is a test and demo tool, so its settings are plain mutable dataclasses (faults
change at run time through ``POST /config``), kept apart from the gateway's frozen
``smppgw.config.model`` objects: they describe the *other* side of the wire.

Three ways in, one result: Python code builds :class:`SimConfig` directly, the ``smppgw sim``
flags go through :func:`parse_accounts` / :func:`parse_mix` / :func:`parse_listen`, and a YAML
file with several SMSCs goes through :func:`load_yaml` (unknown keys are errors naming
their path, as in the gateway's own config).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smppgw.config import parse_listen as config_parse_listen
from smppgw.smpp.constants import Status

#: Receipt states the simulator can report, with their message_state TLV value.
RECEIPT_STATES: dict[str, int] = {
    "ENROUTE": 1,
    "DELIVRD": 2,
    "EXPIRED": 3,
    "DELETED": 4,
    "UNDELIV": 5,
    "ACCEPTD": 6,
    "UNKNOWN": 7,
    "REJECTD": 8,
}


class SimConfigError(ValueError):
    """A setting the simulator cannot use; the message names the setting."""


@dataclass
class SimAccount:
    """One ESME account on the simulated SMSC."""

    system_id: str
    password: str = field(repr=False)
    #: Accepted submit_sm/data_sm per sliding second, across all binds; None: no limit.
    tps: float | None = None
    max_binds: int = 10


@dataclass
class Faults:
    """Misbehaviour to inject; every field can change while the simulator runs."""

    #: Fraction (0..1) of otherwise valid submits answered with ``reject_status``.
    reject_fraction: float = 0.0
    reject_status: int = Status.ESME_RSYSERR
    #: Seconds every submit_sm_resp / data_sm_resp is held back.
    response_delay: float = 0.0
    #: Fraction (0..1) of accepted submits that never get a response (nor a receipt).
    no_response_fraction: float = 0.0
    #: Close a connection right after answering its N-th submit; None: never.
    drop_after_submits: int | None = None
    #: Refuse binds (ESME_RBINDFAIL) for this many seconds from when it is set.
    refuse_binds_for: float = 0.0
    #: Seconds: each submit reaches the account's rate limiter up to this much after it
    #: arrived (uniformly random, in arrival order), as behind an SMSC's front-end queue;
    #: its recorded arrival time is the one the limiter saw. 0: counted as it arrives.
    arrival_jitter: float = 0.0


FAULT_FIELDS = frozenset(f.name for f in dataclasses.fields(Faults))


@dataclass
class SimConfig:
    """One simulated SMSC: a listening port, its accounts and its behaviour."""

    host: str = "127.0.0.1"
    port: int = 0
    accounts: list[SimAccount] = field(default_factory=lambda: [SimAccount("test", "test")])
    #: How message ids are written: "hex" or "decimal".
    id_format: str = "hex"
    #: Seconds between the submit_sm and its receipt.
    receipt_delay: float = 0.0
    #: Receipt state → weight; normalised, so {"DELIVRD": 95, "UNDELIV": 5} works too.
    receipt_mix: dict[str, float] = field(default_factory=lambda: {"DELIVRD": 1.0})
    #: Receipts without the receipted_message_id / message_state TLVs (text only).
    receipt_text_only: bool = False
    #: Receipts carry the message id in the other base (decimal when ids are hex, ...).
    receipt_id_other_base: bool = False
    #: Port of the HTTP control interface (0: any free port); None: no control interface.
    control_port: int | None = None
    #: JSON-lines PDU log file; None: no PDU log.
    pdu_log: str | None = None
    faults: Faults = field(default_factory=Faults)
    control_host: str = "127.0.0.1"
    #: Name in logs, in the "listening" line and the system_id of bind responses.
    name: str = "sim"
    #: Seconds of silence from a bound client before the simulator sends enquire_link;
    #: 0 disables it. A client that does not answer within the same time is disconnected.
    enquire_link_interval: float = 30.0
    #: Seconds to wait for a deliver_sm_resp before the deliver_sm is sent again.
    deliver_timeout: float = 10.0
    #: Times a receipt / MO deliver_sm is sent before it is given up.
    deliver_attempts: int = 3
    #: Seconds before a deliver_sm answered with an error status is sent again.
    deliver_retry_delay: float = 1.0
    #: deliver_sm outstanding per connection.
    deliver_window: int = 100
    #: Accepted submits kept in ``Simulator.submits`` (older ones are dropped in halves).
    keep_submits: int = 200_000
    #: Destination prefix → command_status the submit_sm is refused with (a ported number);
    #: checked by :class:`smppgw.sim.rejects.DestRejects`, changeable through the control port.
    reject_dest: dict[str, int] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`SimConfigError` for values that cannot work."""
        if self.id_format not in ("hex", "decimal"):
            raise SimConfigError(f"id_format: {self.id_format!r}, expected hex or decimal")
        if not self.accounts:
            raise SimConfigError("accounts: at least one account is needed")
        seen: set[str] = set()
        for account in self.accounts:
            if not account.system_id or len(account.system_id) > 15:
                raise SimConfigError(
                    f"accounts: system_id {account.system_id!r} must be 1-15 chars"
                )
            if account.system_id in seen:
                raise SimConfigError(f"accounts: system_id {account.system_id!r} given twice")
            seen.add(account.system_id)
            if account.tps is not None and not account.tps > 0:
                raise SimConfigError(f"accounts: {account.system_id}: tps must be > 0")
            if account.max_binds < 1:
                raise SimConfigError(f"accounts: {account.system_id}: max_binds must be >= 1")
        check_mix(self.receipt_mix)
        for name in ("receipt_delay", "deliver_timeout", "deliver_retry_delay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise SimConfigError(f"{name}: {value!r} must be a number >= 0")
        if self.deliver_attempts < 1 or self.deliver_window < 1 or self.keep_submits < 1:
            raise SimConfigError("deliver_attempts, deliver_window and keep_submits must be >= 1")
        check_faults(self.faults)


def check_mix(mix: dict[str, float]) -> None:
    if not mix:
        raise SimConfigError("receipt_mix: empty")
    for state, weight in mix.items():
        if state not in RECEIPT_STATES:
            raise SimConfigError(
                f"receipt_mix: unknown state {state!r}; one of {', '.join(RECEIPT_STATES)}"
            )
        if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
            raise SimConfigError(f"receipt_mix: {state}: weight {weight!r} must be >= 0")
    if sum(mix.values()) <= 0:
        raise SimConfigError("receipt_mix: the weights add up to 0")


def check_faults(faults: Faults) -> None:
    for name in ("reject_fraction", "no_response_fraction"):
        value = getattr(faults, name)
        if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
            raise SimConfigError(f"faults.{name}: {value!r} must be between 0 and 1")
    for name in ("response_delay", "refuse_binds_for", "arrival_jitter"):
        value = getattr(faults, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise SimConfigError(f"faults.{name}: {value!r} must be a number >= 0")
    drop = faults.drop_after_submits
    if drop is not None and (isinstance(drop, bool) or not isinstance(drop, int) or drop < 1):
        raise SimConfigError(f"faults.drop_after_submits: {drop!r} must be an integer >= 1")
    if not isinstance(faults.reject_status, int) or not 0 <= faults.reject_status <= 0xFFFFFFFF:
        raise SimConfigError(f"faults.reject_status: {faults.reject_status!r} is not a status")


def parse_status(value: int | str) -> int:
    """A command_status from a number (``88``, ``"0x58"``) or a name (``"ESME_RTHROTTLED"``)."""
    if isinstance(value, bool):
        raise SimConfigError(f"status {value!r} is not a command_status")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return Status[text.upper()].value
    except KeyError:
        pass
    try:
        return int(text, 0)
    except ValueError:
        raise SimConfigError(f"status {value!r}: not a number nor an ESME_* name") from None


def fault_changes(raw: dict[str, Any]) -> dict[str, Any]:
    """Check a JSON/YAML mapping of fault fields and convert it for :func:`dataclasses.replace`."""
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in FAULT_FIELDS:
            raise SimConfigError(_unknown_key("faults", key, FAULT_FIELDS))
        if key == "reject_status":
            value = parse_status(value)
        elif key == "drop_after_submits":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise SimConfigError(f"faults.drop_after_submits: {value!r} must be an integer")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise SimConfigError(f"faults.{key}: {value!r} must be a number")
        changes[key] = value
    check_faults(dataclasses.replace(Faults(), **changes))
    return changes


# --------------------------------------------------------------------------- flags


def parse_listen(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT``; IPv6 hosts in brackets (``[::1]:2775``).

    :func:`smppgw.config.parse_listen` with a default host, its error as a SimConfigError."""
    try:
        return config_parse_listen(text.strip(), default_host)
    except ValueError as error:
        raise SimConfigError(str(error)) from None


def parse_accounts(text: str) -> list[SimAccount]:
    """``id:password[:tps],...`` as on the command line."""
    accounts: list[SimAccount] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        fields = item.split(":")
        if len(fields) not in (2, 3) or not fields[0]:
            raise SimConfigError(f"accounts: {fields[0]!r}...: expected id:password[:tps]")
        tps: float | None = None
        if len(fields) == 3 and fields[2]:
            try:
                tps = float(fields[2])
            except ValueError:
                raise SimConfigError(f"accounts: {fields[0]}: tps {fields[2]!r}") from None
        accounts.append(SimAccount(fields[0], fields[1], tps))
    if not accounts:
        raise SimConfigError("accounts: none given")
    return accounts


def parse_mix(text: str) -> dict[str, float]:
    """``DELIVRD:0.95,UNDELIV:0.05`` as on the command line."""
    mix: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        state, _, weight = item.partition(":")
        try:
            mix[state.strip().upper()] = float(weight) if weight else 1.0
        except ValueError:
            raise SimConfigError(f"receipt_mix: {item!r}: expected STATE:WEIGHT") from None
    check_mix(mix)
    return mix


# --------------------------------------------------------------------------- YAML

_SMSC_KEYS = {
    "listen",
    "control",
    "accounts",
    "id_format",
    "receipt_delay",
    "receipt_mix",
    "receipt_text_only",
    "receipt_id_other_base",
    "log",
    "faults",
    "enquire_link_interval",
    "deliver_timeout",
    "deliver_attempts",
    "deliver_retry_delay",
    "deliver_window",
    "keep_submits",
    "reject_dest",
}
_ACCOUNT_KEYS = {"system_id", "password", "tps", "max_binds"}


def _unknown_key(path: str, key: object, allowed: set[str] | frozenset[str]) -> str:
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{path}.{key}: unknown key{hint}"


def load_yaml(path: str | Path) -> list[SimConfig]:
    """Read a YAML file with one or more SMSCs (``smscs: {name: {...}}``)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SimConfigError(f"{path}: {exc}") from exc
    return configs_from_mapping(raw)


def configs_from_mapping(raw: object) -> list[SimConfig]:
    if not isinstance(raw, dict) or set(raw) - {"smscs", "defaults"}:
        keys = sorted(raw) if isinstance(raw, dict) else raw
        raise SimConfigError(f"expected top-level keys 'smscs' (and 'defaults'), got {keys!r}")
    defaults = raw.get("defaults") or {}
    smscs = raw.get("smscs")
    if not isinstance(smscs, dict) or not smscs:
        raise SimConfigError("smscs: expected a mapping of carrier name to SMSC settings")
    if not isinstance(defaults, dict):
        raise SimConfigError("defaults: expected a mapping")
    configs = []
    for name, body in smscs.items():
        if not isinstance(body, dict):
            raise SimConfigError(f"smscs.{name}: expected a mapping")
        merged = {**defaults, **body}
        configs.append(_smsc_from_mapping(str(name), merged))
    return configs


def _smsc_from_mapping(name: str, raw: dict[str, Any]) -> SimConfig:
    where = f"smscs.{name}"
    for key in raw:
        if key not in _SMSC_KEYS:
            raise SimConfigError(_unknown_key(where, key, _SMSC_KEYS))
    config = SimConfig(name=name)
    try:
        if "listen" in raw:
            config.host, config.port = parse_listen(str(raw["listen"]))
        if raw.get("control") is not None:
            config.control_host, config.control_port = parse_listen(str(raw["control"]))
        if "accounts" in raw:
            config.accounts = _accounts_from(where, raw["accounts"])
        if "receipt_mix" in raw:
            mix = raw["receipt_mix"]
            config.receipt_mix = (
                parse_mix(mix)
                if isinstance(mix, str)
                else {str(k).upper(): float(v) for k, v in dict(mix).items()}
            )
        if "log" in raw:
            config.pdu_log = None if raw["log"] is None else str(raw["log"])
        if "faults" in raw:
            config.faults = dataclasses.replace(Faults(), **fault_changes(dict(raw["faults"])))
        if "reject_dest" in raw:
            config.reject_dest = _reject_dest_from(raw["reject_dest"])
        for key in (
            "id_format",
            "receipt_delay",
            "receipt_text_only",
            "receipt_id_other_base",
            "enquire_link_interval",
            "deliver_timeout",
            "deliver_attempts",
            "deliver_retry_delay",
            "deliver_window",
            "keep_submits",
        ):
            if key in raw:
                setattr(config, key, raw[key])
        config.validate()
    except (SimConfigError, TypeError, ValueError) as exc:
        raise SimConfigError(f"{where}: {exc}") from exc
    return config


def _reject_dest_from(raw: object) -> dict[str, int]:
    # Imported here: smppgw.sim.rejects builds on this module's parse_status / SimConfigError.
    from smppgw.sim.rejects import from_mapping

    return from_mapping(raw or {})


def _accounts_from(where: str, raw: object) -> list[SimAccount]:
    if isinstance(raw, str):
        return parse_accounts(raw)
    if not isinstance(raw, list):
        raise SimConfigError(f"{where}.accounts: expected a list")
    accounts = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise SimConfigError(f"{where}.accounts[{i}]: expected a mapping")
        for key in item:
            if key not in _ACCOUNT_KEYS:
                raise SimConfigError(_unknown_key(f"{where}.accounts[{i}]", key, _ACCOUNT_KEYS))
        if "system_id" not in item or "password" not in item:
            raise SimConfigError(f"{where}.accounts[{i}]: system_id and password are required")
        tps = item.get("tps")
        accounts.append(
            SimAccount(
                system_id=str(item["system_id"]),
                password=str(item["password"]),
                tps=None if tps is None else float(tps),
                max_binds=int(item.get("max_binds", 10)),
            )
        )
    return accounts
