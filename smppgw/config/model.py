"""The parsed configuration: plain frozen dataclasses, built once by the loader.

Like uvicorn's ``Config``, nothing here reads files or environment variables: the loader
(:func:`smppgw.config.loader.load_config`) resolves defaults and secrets, and every other
module only consumes these objects. Secrets are held in :class:`Secret` so that a ``repr()``
in a log line or a traceback never shows them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from enum import StrEnum


class Secret:
    """A password that prints as ``'***'``; ``reveal()`` is the one way to read it."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str = "") -> None:
        self._value = value
        #: Where the value came from, safe to print: "env NAME", "file PATH" or "" (inline).
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class BindMode(StrEnum):
    TRANSCEIVER = "transceiver"
    TRANSMITTER_RECEIVER = "transmitter_receiver"
    TRANSMITTER = "transmitter"


class ReadyPolicy(StrEnum):
    """Which carriers must have a bind up before /readyz answers 200 (the broker connection
    is always required): ``all`` suits one gateway per carrier set, where a missing bind is
    worth a page; ``any`` keeps a multi-carrier gateway in rotation while one carrier is
    down (its jobs queue in the store); ``none`` leaves carriers to the metrics alone."""

    ALL = "all"  # every configured carrier has at least one bind up
    ANY = "any"  # at least one carrier has a bind up
    NONE = "none"  # binds do not matter; only the broker connection does


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"
    AUTO = "auto"  # console on a TTY, JSON otherwise


@dataclass(frozen=True, slots=True)
class TlsConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "smppgw-1"
    username: str | None = None
    password: Secret | None = None
    tls: TlsConfig | None = None
    submit_topic: str = "sms/submit"
    status_topic: str = "sms/status"
    inbound_topic: str = "sms/inbound"
    rejected_topic: str = "sms/rejected"
    #: Cancels in (``{"id": ...}``); a tenant's on ``<cancel_topic>/<tenant>``.
    cancel_topic: str = "sms/cancel"
    #: Consent changes out (``{"number", "action", "keyword", "carrier", "at"}``).
    consent_topic: str = "sms/consent"
    #: Replies to ``expect_reply`` jobs: ``<reply_topic>/<job key>`` (a tenant's job:
    #: ``<reply_topic>/<tenant>/<id>``).
    reply_topic: str = "sms/reply"
    shared_group: str | None = None
    keepalive: int = 30
    #: MQTT 5 session expiry: how long the broker keeps our subscription and queued jobs.
    session_expiry: int = 7 * 86400
    #: Largest job payload accepted, in octets.
    max_payload: int = 64 * 1024
    #: Topic prefixes a job's MQTT 5 Response Topic must lie under (a prefix itself, or
    #: below it); empty: any topic outside the gateway's own topic tree.
    response_prefixes: tuple[str, ...] = ()
    #: Longest MQTT 5 Correlation Data accepted with a job, in octets.
    max_correlation: int = 256


class StoreBackend(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = "/var/lib/smppgw/smppgw.db"
    #: Finished jobs are purged after this many seconds.
    retention: float = 7 * 86400.0
    #: Longest a write waits for its group commit, in seconds.
    commit_interval: float = 0.0
    #: Keep a job's text in the store once it is submitted or final (off: it is blanked
    #: in the same transaction, so OTPs do not stay on disk for ``retention``).
    keep_text: bool = False
    #: ``sqlite`` (embedded, one gateway: ``path``) or ``postgres`` (shared by a cluster:
    #: ``dsn``).
    backend: StoreBackend = StoreBackend.SQLITE
    #: PostgreSQL URL (``postgresql://user@host/db``), from ``dsn`` / ``dsn_env`` /
    #: ``dsn_file``; may carry a password, so it is a Secret and never logged.
    dsn: Secret | None = None
    #: Seconds after which a gateway that stopped renewing its lease (kill -9, power loss)
    #: has its claimed jobs and unpublished events taken over by another.
    lease: float = 15.0
    #: Where the SQLite writer runs: ``process`` (a child process with its own GIL, so the
    #: event loop keeps a core to itself: +10-25 % jobs/s where a second core is free,
    #: docs/performance.md), ``thread`` (in the gateway's process, sharing its GIL;
    #: cheaper per job well below capacity) or ``auto`` (both open, the active one chosen
    #: by the load, handed over at a quiescent point: ``smppgw.store.auto``).
    writer: str = "process"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """This gateway among several (``store.backend: postgres``)."""

    #: Unique per gateway: owner of what it claims and writes. Default: the hostname.
    node_id: str = field(default_factory=socket.gethostname)
    #: Redis URL (``redis://host:6379/0``) from ``redis`` / ``redis_env`` / ``redis_file``;
    #: set: each carrier's ``tps`` is shared by the whole cluster.
    redis: Secret | None = None


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    #: ``host:port`` for /metrics, /healthz, /readyz; ``None`` disables the endpoint.
    listen: str | None = "127.0.0.1:9464"
    #: Which carriers need a bind up for /readyz to answer 200.
    ready_policy: ReadyPolicy = ReadyPolicy.ALL


@dataclass(frozen=True, slots=True)
class CtlConfig:
    """``smppgw ctl``'s UNIX socket: owner-only (0600) unless other uids are allowed."""

    #: Path of the socket; ``None`` turns the control socket off.
    socket: str | None = "/run/smppgw/ctl.sock"
    #: Uids besides the gateway's own (and root) whose clients are served; each connection's
    #: peer uid (SO_PEERCRED) is checked. Non-empty: the socket file is made 0666.
    allow_uids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: LogFormat = LogFormat.AUTO


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    country_code: str = "84"
    #: Country codes (digit strings) besides ``country_code`` that jobs may be sent to;
    #: empty: national numbers only.
    allow_international: tuple[str, ...] = ()
    #: How long a learned number → carrier mapping (a ported number) is trusted, in seconds.
    ported_ttl: float = 30 * 86400.0
    #: An operator's number-portability list (``number,carrier`` lines), loaded at start
    #: and on reload; ``None``: only learned and imported mappings.
    ported_file: str | None = None


@dataclass(frozen=True, slots=True)
class SourceConfig:
    address: str
    ton: int = 5
    npi: int = 0


@dataclass(frozen=True, slots=True)
class CarrierConfig:
    name: str
    host: str
    port: int
    system_id: str
    password: Secret = field(default_factory=lambda: Secret(""))
    system_type: str = ""
    bind: BindMode = BindMode.TRANSCEIVER
    sessions: int = 1
    tps: float = 10.0
    window: int = 10
    source: SourceConfig | None = None
    prefixes: tuple[str, ...] = ()
    #: Text coding: auto (GSM when possible, else UCS2), gsm, latin1 or ucs2.
    coding: str = "auto"
    #: Concatenation of long messages: udh8, udh16, sar or payload.
    concat: str = "udh8"
    max_parts: int = 10
    #: Ask for delivery receipts by default (a job's ``dlr`` overrides it).
    registered_delivery: bool = True
    #: Seconds between enquire_link on an idle bind.
    enquire_link_interval: float = 30.0
    #: Seconds to wait for any response (submit_sm_resp, enquire_link_resp, ...).
    response_timeout: float = 10.0
    #: Seconds to wait for a bind_*_resp.
    bind_timeout: float = 10.0
    #: Seconds a PDU may take to arrive once its first octets did; a peer that stops or
    #: trickles mid-PDU has its connection closed after this (0: no limit).
    frame_timeout: float = 10.0
    #: Reconnect back-off: exponential with full jitter between these bounds, in seconds.
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    #: Pause after ESME_RTHROTTLED / ESME_RMSGQFUL, doubled while it continues, in seconds.
    throttle_backoff: float = 1.0
    throttle_backoff_max: float = 30.0
    #: Transient errors: retries before the job is ``failed``, and the first retry delay.
    max_retries: int = 5
    retry_backoff: float = 2.0
    #: Re-send a submit_sm whose response never came (risking a duplicate). Off by default.
    resend_on_timeout: bool = False
    #: How long a receipt that beat its submit_sm_resp is held for matching, in seconds.
    receipt_hold: float = 30.0
    #: How message ids are written in submit_sm_resp and in receipts: "string" (compared
    #: case-insensitively without leading zeros), "hex" or "decimal" (compared as numbers).
    submit_id_base: str = "string"
    receipt_id_base: str = "string"
    #: Connect to the SMSC over TLS.
    tls: TlsConfig | None = None
    address_range: str = ""
    #: Per-status overrides of the submit error policy (``smppgw.engine.policy``): pairs of
    #: (status name or number, "permanent" | "transient" | "throttle").
    error_policy: tuple[tuple[str, str], ...] = ()
    #: The account's binds across every gateway of a cluster (``store.backend: postgres``):
    #: a gateway whose binds would exceed it waits for a free one. ``None``: no cap.
    max_binds: int | None = None
    #: Carriers tried, in this order, when this one cannot take a job (``failover``).
    failover: tuple[str, ...] = ()
    #: submit_sm statuses (numbers) that send a job on to the next carrier of its chain.
    failover_on: tuple[int, ...] = ()
    #: No bind up this long (seconds): queued jobs move to the next carrier of their chain.
    failover_after: float = 30.0
    #: The same for ``high`` jobs, sooner.
    failover_after_high: float = 5.0


@dataclass(frozen=True, slots=True)
class TenantConfig:
    """One internal service sharing the gateway: its jobs arrive on ``<submit_topic>/<name>``
    (the broker ACL ties that topic to its account) and its ids are its own namespace.

    ``None`` means "no limit" for each limit. ``name: default`` puts rules on plain
    ``<submit_topic>``, which is otherwise unrestricted."""

    name: str
    #: ``from`` values it may use (``None``: any); a job without ``from`` is always allowed.
    senders: tuple[str, ...] | None = None
    #: Priority lanes it may use (``None``: all three).
    priorities: tuple[str, ...] | None = None
    #: May its jobs set ``carrier`` (skipping prefix routing)?
    force_carrier: bool = False
    #: Jobs per second taken in; faster publishers get their PUBACKs paced.
    rate: float | None = None
    #: SMS parts per day (gateway local date); over it jobs are rejected ``quota_exceeded``.
    daily_parts: int | None = None
    #: Jobs waiting to be submitted; at this many its intake pauses (no PUBACK).
    max_queued: int | None = None
    #: Numbers it receives MO on ("text us"): short codes and long numbers, as digit
    #: strings (long numbers normalised like destinations). An MO to one of them that
    #: answers no open job goes to ``<inbound_topic>/<name>/<carrier>``.
    numbers: tuple[str, ...] = ()
    #: First words (in ``normalize_keyword`` form) that send such an MO to this tenant.
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsentConfig:
    """Marketing rules and MO keywords (``consent:``): Decree 91/2020/ND-CP in Vietnam,
    TCPA's STOP/START/HELP in the US. Every key has a default; all reloadable."""

    #: IANA zone the marketing hours are read in.
    timezone: str = "Asia/Ho_Chi_Minh"
    #: ``"HH:MM-HH:MM"`` local time marketing jobs may be sent in (start included, end
    #: excluded; may wrap midnight, ``"22:00-06:00"``; ``"00:00-24:00"``: always).
    marketing_hours: str = "07:00-22:00"
    #: Marketing messages per number in any rolling 24 h; 0 = no cap.
    marketing_daily_cap: int = 3
    #: Over the cap: ``reject`` (code frequency_cap) or ``defer`` (held until allowed).
    cap_action: str = "reject"
    #: Put first in a marketing text that does not already start with it ("" = off).
    marketing_prefix: str = "[QC] "
    #: Appended to a marketing text that does not already end with it ("" = off).
    marketing_footer: str = ""
    optout_keywords: tuple[str, ...] = ("STOP", "HUY", "HUY QC", "TU CHOI", "TC", "UNSUBSCRIBE")
    optin_keywords: tuple[str, ...] = ("START", "DK")
    #: Sent back to the number (from the MO's ``to``) after an opt-out; None: nothing.
    optout_reply: str | None = None
    help_keywords: tuple[str, ...] = ("HELP",)
    #: Sent back to the number (from the MO's ``to``) for a help keyword; None: nothing.
    help_reply: str | None = None
    #: Any other MO from a number with no consent record opts it in (keyword ``mo``).
    mo_is_optin: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    carriers: tuple[CarrierConfig, ...]
    mqtt: MqttConfig = MqttConfig()
    store: StoreConfig = StoreConfig()
    cluster: ClusterConfig = ClusterConfig()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()
    routing: RoutingConfig = RoutingConfig()
    ctl: CtlConfig = CtlConfig()
    #: On SIGTERM, how long in-flight submits may take before the binds are closed.
    drain_timeout: float = 10.0
    #: Named publishers with their own topic, id namespace and limits.
    tenants: tuple[TenantConfig, ...] = ()
    #: Marketing rules and MO keywords.
    consent: ConsentConfig = ConsentConfig()
    #: What the parser noticed that is allowed but unwise (a password file others can
    #: read); logged at start and reload, printed by ``check-config``.
    warnings: tuple[str, ...] = field(default=(), compare=False)
