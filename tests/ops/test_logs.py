"""Logging: the JSON lines an operator's log pipeline reads, context binding, and redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import select
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from smppgw.config import LogConfig, LogFormat, Secret
from smppgw.ops import logs
from smppgw.ops.logs import (
    bind_context,
    clear_secrets,
    get_logger,
    log_context,
    register_secret,
    reset_context,
    set_level,
    setup_logging,
)

PASSWORD = "Vt-b1nd-pw!2024"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test configures logging; give the rest of the suite its logging back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("gmqtt", "asyncio")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    clear_secrets()


def json_setup(level: str = "info") -> io.StringIO:
    stream = io.StringIO()
    setup_logging(LogConfig(level=level, format=LogFormat.JSON), stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    # "\n" only, as log shippers do: str.splitlines() would also split inside a JSON string
    # at U+0085 or U+2028, which JSON allows unescaped.
    return [json.loads(line) for line in stream.getvalue().split("\n") if line]


def test_json_lines_carry_time_level_logger_event_and_fields():
    stream = json_setup()
    get_logger("smppgw.carrier").info("bind up", carrier="viettel", binds=2)
    [line] = lines(stream)
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]
    assert line["level"] == "info"
    assert line["logger"] == "smppgw.carrier"
    assert line["event"] == "bind up"
    assert line["carrier"] == "viettel" and line["binds"] == 2
    assert str(line["timestamp"]).endswith("Z")


def test_non_json_values_are_rendered_not_crashing():
    stream = json_setup()
    get_logger("smppgw").info("odd values", at=object(), raw=b"\x00\xff", many={1, 2})
    [line] = lines(stream)
    assert str(line["at"]).startswith("<object object")


def test_level_filters_and_can_change_at_run_time():
    stream = json_setup("warning")
    log = get_logger("smppgw")
    log.info("not shown")
    log.warning("shown")
    set_level("debug")
    log.debug("now shown")
    assert [line["event"] for line in lines(stream)] == ["shown", "now shown"]
    with pytest.raises(ValueError, match="log level 'loud'"):
        set_level("loud")


def test_stdlib_logging_goes_through_the_same_pipeline_and_gmqtt_is_quiet():
    stream = json_setup("debug")
    logging.getLogger("gmqtt.client").info("[CONNECTION MADE]")
    logging.getLogger("gmqtt.client").warning("[CONNECTION LOST] %s", "reset by peer")
    logging.getLogger("smppgw.other").debug("from %s logging", "stdlib")
    assert [(line["logger"], line["event"]) for line in lines(stream)] == [
        ("gmqtt.client", "[CONNECTION LOST] reset by peer"),
        ("smppgw.other", "from stdlib logging"),
    ]


def test_auto_format_is_json_off_a_terminal_and_console_on_one():
    stream = io.StringIO()
    setup_logging(LogConfig(format=LogFormat.AUTO), stream=stream)
    get_logger("smppgw").info("to a pipe")
    assert lines(stream)[0]["event"] == "to a pipe"

    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            setup_logging(LogConfig(format=LogFormat.AUTO), stream=tty)
            get_logger("smppgw").info("to a terminal", carrier="viettel")
            tty.flush()
            ready, _, _ = select.select([master], [], [], 5)
            assert ready
            shown = os.read(master, 65536).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "to a terminal" in shown
    assert not shown.lstrip().startswith("{")
    assert "\x1b[" in shown  # coloured for a human
    assert "viettel" in shown


async def test_context_binds_per_task_and_does_not_leak():
    stream = json_setup()
    log = get_logger("smppgw.session")

    async def session(carrier: str, index: int) -> None:
        bind_context(carrier=carrier, session=index)
        await asyncio.sleep(0)
        log.info("bound")
        with log_context(job_id="order-1984"):
            log.info("submit")
        log.info("after")

    await asyncio.gather(session("viettel", 0), session("mobifone", 1))
    log.info("main")
    got = [(x.get("carrier"), x.get("session"), x.get("job_id"), x["event"]) for x in lines(stream)]
    assert sorted(got[:-1], key=str) == sorted(
        [
            ("viettel", 0, None, "bound"),
            ("mobifone", 1, None, "bound"),
            ("viettel", 0, "order-1984", "submit"),
            ("mobifone", 1, "order-1984", "submit"),
            ("viettel", 0, None, "after"),
            ("mobifone", 1, None, "after"),
        ],
        key=str,
    )
    assert got[-1] == (None, None, None, "main")


def test_bind_context_skips_none_and_reset_restores():
    stream = json_setup()
    tokens = bind_context(carrier="viettel", session=None, job_id=None)
    get_logger("smppgw").info("one")
    reset_context(tokens)
    get_logger("smppgw").info("two")
    first, second = lines(stream)
    assert first["carrier"] == "viettel" and "session" not in first and "job_id" not in first
    assert "carrier" not in second


def test_credential_keys_are_masked_whatever_the_value():
    stream = json_setup()
    get_logger("smppgw").info(
        "config",
        password="anything",
        mqtt_password="x",
        client_secret="y",
        token="z",
        api_key="k",
        Authorization="Basic abc",
        nested={"password": "p", "host": "smsc.example"},
        tokens_available=5,  # a throttle figure, not a credential
        token_bucket="gcra",
        password_set=None,
    )
    [line] = lines(stream)
    for key in ("password", "mqtt_password", "client_secret", "token", "api_key", "Authorization"):
        assert line[key] == "***", key
    assert line["nested"] == {"password": "***", "host": "smsc.example"}
    assert line["tokens_available"] == 5 and line["token_bucket"] == "gcra"
    assert line["password_set"] is None


def test_registered_secrets_never_print_anywhere():
    stream = json_setup("debug")
    register_secret(Secret(PASSWORD))
    log = get_logger("smppgw.session")
    log.info(f"bind_transceiver system_id=shopvn password={PASSWORD}")
    log.info("fields", value=PASSWORD, items=[f"pw:{PASSWORD}"], raw=PASSWORD.encode())
    log.info("secret object", account=Secret(PASSWORD))
    try:
        raise ConnectionError(f"SMSC said: bad password {PASSWORD}")
    except ConnectionError:
        log.exception("bind failed")
    logging.getLogger("gmqtt.client").error("auth with %s failed", PASSWORD)
    with log_context(carrier=PASSWORD):
        log.warning("context too")
    output = stream.getvalue()
    assert PASSWORD not in output
    assert output.count("***") >= 7
    assert "ConnectionError: SMSC said: bad password ***" in output


def test_short_secrets_are_masked_only_as_whole_values():
    stream = json_setup()
    register_secret("42")
    get_logger("smppgw").info("tps 42 of 420", pin="42", code="42")
    [line] = lines(stream)
    assert line["event"] == "tps 42 of 420"
    assert line["code"] == "***"


def test_empty_secrets_are_ignored():
    register_secret("")
    register_secret(None)
    register_secret(Secret(""))
    assert logs._secrets == frozenset()


@settings(max_examples=60, deadline=None)
@given(
    secret=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=4),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_a_registered_secret_never_appears_in_any_field(secret: str, before: str, after: str):
    if "*" in secret:  # a secret made of the mask itself cannot be told apart from it
        return
    stream = json_setup()
    clear_secrets()
    register_secret(secret)
    get_logger("smppgw").info(before + secret + after, field=after + secret, n=[secret])
    [line] = lines(stream)
    for value in (line["event"], line["field"], *line["n"]):  # type: ignore[misc]
        assert secret not in value
