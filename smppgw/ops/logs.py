"""Structured logging: one JSON object per line in production, readable lines on a terminal.

Every log line — ours through structlog, and third-party ones (gmqtt, asyncio) through the
stdlib ``logging`` module — goes through the same processor chain and the one handler on the
root logger, so journald or ``docker logs`` see a single format.

Context that a whole task shares (``carrier``, ``session``, ``job_id``) is bound once with
:func:`bind_context` or :func:`log_context` via ``contextvars``: asyncio copies the context
into each task, so a session task's binding appears on every line it logs and on no other
task's lines.

Passwords must never reach a log. Two nets: any key that looks like a credential
(``password``, ``secret``, ``token``, ...) is masked whatever its value, and any string that
contains a value registered with :func:`register_secret` (the config loader registers every
carrier and broker password) is masked wherever it appears — in the message, in a field, or
in a formatted traceback.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import Token
from typing import Any, TextIO

import orjson
import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from smppgw.config import LogConfig, LogFormat, Secret

MASK = "***"

#: Keys whose values are always masked (case-insensitive): any key containing
#: password/secret, or ending in token, api_key, credentials, ... (not ``token_bucket``).
_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|secret"
    r"|(^|[_-])(token|api_?key|credentials?|authori[sz]ation|private_?key)s?$",
    re.IGNORECASE,
)

#: Shorter registered secrets are masked only as whole values: masking every "42" or "ab"
#: inside unrelated text would make the logs unreadable without protecting anything.
_MIN_SUBSTRING_SECRET = 4

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

#: Chatty libraries: their INFO lines (every connect, every packet) are noise in ours.
_QUIET_LOGGERS = ("gmqtt", "asyncio")

_secrets_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(value: str | Secret | None) -> None:
    """Mask ``value`` wherever it would appear in a log line from now on."""
    global _secrets
    text = value.reveal() if isinstance(value, Secret) else value
    if not text:
        return
    with _secrets_lock:
        _secrets = _secrets | {text}


def clear_secrets() -> None:
    """Forget registered secrets (before re-registering the ones of a reloaded config)."""
    global _secrets
    with _secrets_lock:
        _secrets = frozenset()


def _scrub_text(text: str, secrets: frozenset[str]) -> str:
    for secret in secrets:
        if text == secret:
            return MASK
        if len(secret) >= _MIN_SUBSTRING_SECRET and secret in text:
            text = text.replace(secret, MASK)
    return text


def _scrub(value: Any, secrets: frozenset[str]) -> Any:
    if isinstance(value, str):
        return _scrub_text(value, secrets) if secrets else value
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Mapping):
        return {
            key: MASK if _is_secret_key(key, item) else _scrub(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item, secrets) for item in value]
    if isinstance(value, bytes | bytearray) and secrets:
        return _scrub_text(bytes(value).decode("utf-8", "replace"), secrets)
    return value


def _is_secret_key(key: object, value: object) -> bool:
    return isinstance(key, str) and value is not None and bool(_SECRET_KEY.search(key))


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask credential-named keys and registered secret values."""
    secrets = _secrets
    for key, value in list(event_dict.items()):
        if key.startswith("_"):  # structlog/ProcessorFormatter internals (the LogRecord)
            continue
        if _is_secret_key(key, value):
            event_dict[key] = MASK
        else:
            event_dict[key] = _scrub(value, secrets)
    return event_dict


_LEADING = ("timestamp", "level", "logger", "event")


def _leading_keys(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Put when/what first, so a human scanning raw JSON lines finds them at a glance."""
    head = {key: event_dict.pop(key) for key in _LEADING if key in event_dict}
    head.update(event_dict)
    return head


def _orjson_dumps(obj: Any, **_kw: Any) -> str:
    return orjson.dumps(obj, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()


def parse_level(level: str) -> int:
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log level {level!r}: use one of debug, info, warning, error") from None


def setup_logging(config: LogConfig, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger once, at start-up.

    ``stream`` defaults to stderr (journald and Docker collect it). ``format: auto`` means
    console output when that stream is a terminal, JSON otherwise. Calling it again (on a
    reload, or in tests) replaces the previous set-up instead of adding a second handler.
    """
    out = stream if stream is not None else sys.stderr
    fmt = LogFormat(config.format)
    if fmt is LogFormat.AUTO:
        fmt = LogFormat.CONSOLE if _isatty(out) else LogFormat.JSON

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    render: list[Processor]
    if fmt is LogFormat.JSON:
        render = [_leading_keys, structlog.processors.JSONRenderer(serializer=_orjson_dumps)]
    else:
        render = [structlog.dev.ConsoleRenderer(colors=_isatty(out))]
    # Tracebacks are rendered to text *before* redaction, so a password in an exception
    # message is masked too; the console renderer then prints the text as it is.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact,
            *render,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.set_name("smppgw")

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(config.level))
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def set_level(level: str) -> None:
    """Change the level at run time (a SIGHUP reload); takes effect on the next line."""
    logging.getLogger().setLevel(parse_level(level))


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A structlog logger named like a stdlib one (``smppgw.engine.carrier``), with bound values."""
    return structlog.stdlib.get_logger(name, **initial)


def bind_context(
    *,
    carrier: str | None = None,
    session: int | str | None = None,
    job_id: str | None = None,
    **extra: Any,
) -> Mapping[str, Token[Any]]:
    """Bind values to every log line of the current task (and tasks it creates from now).

    ``None`` values are skipped, so callers can pass what they have. Returns the tokens for
    :func:`reset_context`.
    """
    values = {"carrier": carrier, "session": session, "job_id": job_id, **extra}
    return structlog.contextvars.bind_contextvars(
        **{key: value for key, value in values.items() if value is not None}
    )


def reset_context(tokens: Mapping[str, Token[Any]]) -> None:
    structlog.contextvars.reset_contextvars(**tokens)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()


@contextmanager
def log_context(
    *,
    carrier: str | None = None,
    session: int | str | None = None,
    job_id: str | None = None,
    **extra: Any,
) -> Iterator[None]:
    """``with log_context(job_id=...):`` binds for the block and restores afterwards."""
    tokens = bind_context(carrier=carrier, session=session, job_id=job_id, **extra)
    try:
        yield
    finally:
        reset_context(tokens)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = [
    "MASK",
    "bind_context",
    "clear_context",
    "clear_secrets",
    "get_logger",
    "log_context",
    "parse_level",
    "redact",
    "register_secret",
    "reset_context",
    "set_level",
    "setup_logging",
]
