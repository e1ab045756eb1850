"""Config parsing: defaults, every error path (exact path and message), secrets, check-config."""

from __future__ import annotations

import copy
import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smppgw.cli import main
from smppgw.config import (
    BindMode,
    CarrierConfig,
    ClusterConfig,
    Config,
    ConfigError,
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
    parse_listen,
)
from smppgw.config.loader import load_config, parse_config
from smppgw.config.model import ReadyPolicy
from smppgw.config.reader import _TLS_KEYS, parse_duration
from smppgw.config.sections import (
    _CARRIER_CHECKS,
    _CLUSTER_KEYS,
    _LOG_KEYS,
    _METRICS_KEYS,
    _MQTT_CHECKS,
    _ROUTING_KEYS,
    _SOURCE_KEYS,
    _STORE_KEYS,
    TOP_KEYS,
)
from smppgw.config.summary import summary
from smppgw.engine.policy import Action, ErrorPolicy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "conf" / "smppgw.example.yaml"
PASSWORD = "s3cr3t-Pw"


def doc(**top: Any) -> dict[str, Any]:
    """A minimal valid document, with top-level overrides."""
    data: dict[str, Any] = {
        "carriers": [
            {
                "name": "viettel",
                "host": "127.0.0.1",
                "port": 2775,
                "system_id": "shopvn",
                "password": PASSWORD,
                "prefixes": ["8486", "8496"],
            }
        ]
    }
    data.update(top)
    return data


def with_carrier(**fields: Any) -> dict[str, Any]:
    data = doc()
    carrier = data["carriers"][0]
    for key, value in fields.items():
        if value is ...:
            carrier.pop(key, None)
        else:
            carrier[key] = value
    return data


def problems(data: object, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kwargs)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def only(data: object, **kwargs: Any) -> str:
    found = problems(data, **kwargs)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------------- valid configs


def test_minimal_config_gets_every_default() -> None:
    config = parse_config(doc())
    assert config.mqtt == MqttConfig()
    assert config.store == StoreConfig()
    carrier = config.carriers[0]
    assert carrier == CarrierConfig(
        name="viettel",
        host="127.0.0.1",
        port=2775,
        system_id="shopvn",
        password=Secret(PASSWORD),
        prefixes=("8486", "8496"),
    )
    assert carrier.bind is BindMode.TRANSCEIVER
    assert config.routing.country_code == "84"


def test_design_example_parses() -> None:
    import yaml

    text = """
mqtt:
  host: 127.0.0.1
  port: 1883
  client_id: smppgw-1
  submit_topic: sms/submit
  status_topic: sms/status
  inbound_topic: sms/inbound
  shared_group: null
store:
  path: /var/lib/smppgw/smppgw.db
metrics:
  listen: 127.0.0.1:9464
log:
  level: info
  format: json
routing:
  country_code: "84"
carriers:
  - name: viettel
    host: 127.0.0.1
    port: 2775
    system_id: shopvn
    password: secret
    bind: transceiver
    sessions: 2
    tps: 100
    window: 10
    source: {address: SHOPVN, ton: 5, npi: 0}
    prefixes: ["8486", "8496", "8497", "8498", "8432", "8433", "8434", "8435", "8436", "8437",
               "8438", "8439"]
"""
    config = parse_config(yaml.safe_load(text))
    viettel = config.carriers[0]
    assert (viettel.sessions, viettel.tps, viettel.window) == (2, 100.0, 10)
    assert viettel.source == SourceConfig("SHOPVN", 5, 0)
    assert config.log.format is LogFormat.JSON


def load_example(tmp_path: Path) -> Config:
    """conf/smppgw.example.yaml, with its secret files and env vars provided."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mqtt_password").write_text("mqtt-pw\n")
    (secrets / "vinaphone_smpp_password").write_text("vina-pw\n")
    text = EXAMPLE.read_text().replace("/run/secrets/", f"{secrets}/")
    file = tmp_path / "smppgw.yaml"
    file.write_text(text)
    env = {"VIETTEL_SMPP_PASSWORD": "viettel-pw", "MOBIFONE_SMPP_PASSWORD": "mobi-pw"}
    env |= {"VIETNAMOBILE_SMPP_PASSWORD": "vnm-pw", "GMOBILE_SMPP_PASSWORD": "gm-pw"}
    return load_config(file, environ=env)


def test_example_file_loads(tmp_path: Path) -> None:
    config = load_example(tmp_path)
    names = [c.name for c in config.carriers]
    assert names == ["viettel", "vinaphone", "mobifone", "vietnamobile", "gmobile"]
    viettel, vinaphone, mobifone, vietnamobile, gmobile = config.carriers
    assert viettel.password.reveal() == "viettel-pw"
    assert vinaphone.password.reveal() == "vina-pw"
    assert mobifone.password.reveal() == "mobi-pw"
    assert config.mqtt.password is not None and config.mqtt.password.reveal() == "mqtt-pw"
    assert viettel.prefixes == ("8486", "8496", "8497", "8498", *(f"843{d}" for d in range(2, 10)))
    assert vinaphone.prefixes == ("8488", "8491", "8494", "8481", "8482", "8483", "8484", "8485")
    assert mobifone.prefixes == ("8489", "8490", "8493", "8470", "8476", "8477", "8478", "8479")
    assert vietnamobile.prefixes == ("8492", "8452", "8456", "8458")
    assert gmobile.prefixes == ("8459", "84993", "84994", "84995", "84996", "84997")
    assert vinaphone.bind is BindMode.TRANSMITTER_RECEIVER
    assert vinaphone.source == SourceConfig("SHOPVN", 5, 0)
    assert mobifone.source == SourceConfig("SHOPVN", 5, 0)
    assert mobifone.concat == "sar"
    assert (viettel.submit_id_base, viettel.receipt_id_base) == ("hex", "decimal")
    assert viettel.error_policy == (("ESME_RSYSERR", "transient"), ("1025", "permanent"))
    assert config.mqtt.session_expiry == 7 * 86400
    assert config.drain_timeout == 10.0
    assert config.consent.marketing_footer == " Tu choi: soan TC gui 8079"
    assert (config.consent.marketing_hours, config.consent.marketing_daily_cap) == (
        "07:00-22:00",
        3,
    )
    assert config.tenants == (
        TenantConfig(
            name="shop",
            senders=("SHOPVN", "8079"),
            priorities=("normal", "low"),
            force_carrier=False,
            rate=50.0,
            daily_parts=100000,
            max_queued=200000,
            numbers=("8079",),
            keywords=("SHOP",),
        ),
    )
    text = summary(config)
    assert "MO numbers 8079, MO keywords SHOP" in text
    for secret in ("viettel-pw", "vina-pw", "mobi-pw", "mqtt-pw", "vnm-pw", "gm-pw"):
        assert secret not in text


def test_example_file_without_its_secrets_names_them() -> None:
    found = problems_from_file(EXAMPLE, environ={})
    assert found == [
        "mqtt.password_file: cannot read /run/secrets/mqtt_password: No such file or directory",
        "carriers[0].password_env: environment variable VIETTEL_SMPP_PASSWORD is not set",
        "carriers[1].password_file: cannot read /run/secrets/vinaphone_smpp_password: "
        "No such file or directory",
        "carriers[2].password_env: environment variable MOBIFONE_SMPP_PASSWORD is not set",
        "carriers[3].password_env: environment variable VIETNAMOBILE_SMPP_PASSWORD is not set",
        "carriers[4].password_env: environment variable GMOBILE_SMPP_PASSWORD is not set",
    ]


#: Each mobile range after the 2018 renumbering (national form) → the carrier that must
#: route it in the example, from the sources its comments cite.
VN_MOBILE_RANGES = {
    **{f"03{d}": "viettel" for d in range(2, 10)},
    **{p: "viettel" for p in ("086", "096", "097", "098")},
    **{p: "vinaphone" for p in ("081", "082", "083", "084", "085", "088", "091", "094")},
    **{p: "mobifone" for p in ("070", "076", "077", "078", "079", "089", "090", "093")},
    **{p: "vietnamobile" for p in ("052", "056", "058", "092")},
    **{p: "gmobile" for p in ("059", "0993", "0997")},
}


def test_example_routes_every_vietnamese_mobile_range(tmp_path: Path) -> None:
    """The longest prefix of each range's numbers is the right carrier's (the Router's rule)."""
    carriers = load_example(tmp_path).carriers

    def owner(msisdn: str) -> str | None:
        claims = [(len(p), c.name) for c in carriers for p in c.prefixes if msisdn.startswith(p)]
        return max(claims)[1] if claims else None

    for national, carrier in VN_MOBILE_RANGES.items():
        assert owner("84" + national[1:] + "1234567"[: 10 - len(national)]) == carrier, national
    for unrouted in ("0871234567", "0551234567", "0998123456"):  # MVNOs: commented out
        assert owner("84" + unrouted[1:]) is None, unrouted
    text = EXAMPLE.read_text()
    for source in ("sggpnews.org.vn", "lawnet.vn", "google/libphonenumber", "vietnamnet.vn"):
        assert source in text


def problems_from_file(path: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    return info.value.problems


def test_full_carrier_and_mqtt(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    data = doc(
        mqtt={
            "host": "broker",
            "port": 8883,
            "client_id": "gw-2",
            "username": "shop",
            "password": "mqtt-pw",
            "tls": {"ca_file": "ca.pem", "verify": True},
            "shared_group": "gateways",
            "keepalive": 0,
            "session_expiry": "1d",
            "max_payload": 1024,
        },
        store={
            "path": "data/gw.db",
            "retention": "2d",
            "commit_interval": 0,
            "keep_text": True,
            "writer": "thread",
        },
        metrics={"listen": "[::1]:9000"},
        log={"level": "DEBUG", "format": "console"},
        routing={"country_code": "1"},
        drain_timeout="1m",
    )
    data["carriers"][0].update(
        bind="transmitter",
        sessions=4,
        tps=12.5,
        window=1,
        coding="ucs2",
        concat="udh16",
        max_parts=6,
        registered_delivery=False,
        enquire_link_interval="15s",
        response_timeout=2.5,
        bind_timeout="500ms",
        reconnect_min="2s",
        reconnect_max="1h30m",
        throttle_backoff=0.5,
        throttle_backoff_max="1m",
        max_retries=0,
        retry_backoff=0,
        resend_on_timeout=True,
        receipt_hold="1m",
        submit_id_base="hex",
        receipt_id_base="decimal",
        system_type="VMA",
        address_range="",
        tls=True,
        source="8079",
    )
    config = parse_config(data, base_dir=tmp_path)
    mqtt = config.mqtt
    assert mqtt.tls == TlsConfig(ca_file=str(ca), verify=True)
    assert (mqtt.username, mqtt.shared_group, mqtt.keepalive) == ("shop", "gateways", 0)
    assert (mqtt.session_expiry, mqtt.max_payload) == (86400, 1024)
    assert config.store == StoreConfig(
        str(tmp_path / "data/gw.db"), 172800.0, 0.0, True, writer="thread"
    )
    assert config.metrics.listen == "[::1]:9000"
    assert (config.log.level, config.log.format) == ("debug", LogFormat.CONSOLE)
    assert config.drain_timeout == 60.0
    c = config.carriers[0]
    assert c.bind is BindMode.TRANSMITTER
    assert (c.sessions, c.tps, c.window, c.coding, c.concat, c.max_parts) == (
        4,
        12.5,
        1,
        "ucs2",
        "udh16",
        6,
    )
    assert (c.bind_timeout, c.reconnect_max, c.throttle_backoff_max) == (0.5, 5400.0, 60.0)
    assert (c.max_retries, c.retry_backoff, c.resend_on_timeout) == (0, 0.0, True)
    assert c.tls == TlsConfig()
    assert c.source == SourceConfig("8079", 1, 1)


def test_cancel_topic_defaults_to_sms_cancel_and_is_configurable() -> None:
    assert parse_config(doc()).mqtt.cancel_topic == "sms/cancel"
    assert parse_config(doc(mqtt={"cancel_topic": "gw/cancel"})).mqtt.cancel_topic == "gw/cancel"


def test_empty_sections_mean_defaults() -> None:
    config = parse_config(doc(mqtt=None, store=None, metrics=None, log=None, routing=None))
    assert config.mqtt == MqttConfig()


def test_metrics_can_be_disabled() -> None:
    assert parse_config(doc(metrics={"listen": None})).metrics.listen is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("7d", 604800.0),
        ("2h", 7200.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1m 30s", 90.0),
        ("90", 90.0),
        ("1.5s", 1.5),
        ("abc", None),
        ("", None),
        ("5x", None),
        ("s", None),
        ("-5s", None),
        ("5s3", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


# ---------------------------------------------------------------------- error paths


def test_unknown_key_suggests_the_closest() -> None:
    data = doc()
    data["carriers"].append(dict(data["carriers"][0], name="vina", prefixes=[], tsp=5))
    assert only(data) == "carriers[1].tsp: unknown key; did you mean tps?"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (doc(carrier=[]), "carrier: unknown key; did you mean carriers?"),
        (doc(mqtt={"hots": "x"}), "mqtt.hots: unknown key; did you mean host?"),
        (doc(mqtt={"passwd_env": "X"}), "mqtt.passwd_env: unknown key; did you mean password_env?"),
        (doc(log={"levle": "info"}), "log.levle: unknown key; did you mean level?"),
        (doc(store={"retension": "1d"}), "store.retension: unknown key; did you mean retention?"),
        (doc(bogus=1), "bogus: unknown key"),
        (doc(country_code="84"), "country_code: unknown key; it belongs in routing"),
        (
            with_carrier(country_code="84"),
            "carriers[0].country_code: unknown key; it belongs in routing",
        ),
        (doc(mqtt={1: "x"}), "mqtt.1: unknown key; keys are names, not numbers"),
    ],
)
def test_unknown_keys(data: dict[str, Any], message: str) -> None:
    assert only(data) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "config: must be a mapping of settings, got a list"),
        ("carriers", "config: must be a mapping of settings, got 'carriers'"),
        (None, "config: the file is empty; at least carriers: is required"),
        ({}, "carriers: required: at least one carrier"),
        (doc(carriers=[]), "carriers: at least one carrier is required"),
        (doc(carriers={"name": "x"}), "carriers: must be a list of carriers, got a mapping"),
        (doc(carriers=["viettel"]), "carriers[0]: must be a mapping of settings, got 'viettel'"),
        (doc(mqtt=5), "mqtt: must be a mapping of settings, got 5"),
        (doc(store="x.db"), "store: must be a mapping of settings, got 'x.db'"),
    ],
)
def test_shape_errors(data: object, message: str) -> None:
    assert only(data) == message


@pytest.mark.parametrize("key", ["name", "host", "port", "system_id"])
def test_required_carrier_fields(key: str) -> None:
    assert only(with_carrier(**{key: ...})) == f"carriers[0].{key}: required"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"port": 0}, "carriers[0].port: must be a port number from 1 to 65535, got 0"),
        ({"port": 65536}, "carriers[0].port: must be a port number from 1 to 65535, got 65536"),
        ({"port": "2775"}, "carriers[0].port: must be a port number from 1 to 65535, got '2775'"),
        ({"port": True}, "carriers[0].port: must be a port number from 1 to 65535, got true"),
        ({"host": ""}, "carriers[0].host: must not be empty"),
        ({"host": 5}, "carriers[0].host: must be a string, got 5"),
        ({"name": "viet tel"}, "carriers[0].name: must be 1 to 64 characters of letters, digits"),
        ({"name": "a/b"}, "carriers[0].name: must be 1 to 64 characters of letters, digits"),
        (
            {"system_id": "x" * 16},
            "carriers[0].system_id: must be at most 15 characters (SMPP 3.4), got 16",
        ),
        ({"system_id": "shọp"}, "carriers[0].system_id: must be Latin-1 text without NUL"),
        ({"system_type": "x" * 13}, "carriers[0].system_type: must be at most 12 characters"),
        ({"tps": 0}, "carriers[0].tps: must be a positive number, got 0"),
        ({"tps": -1.5}, "carriers[0].tps: must be a positive number, got -1.5"),
        ({"tps": "fast"}, "carriers[0].tps: must be a positive number, got 'fast'"),
        ({"tps": float("inf")}, "carriers[0].tps: must be a positive number, got inf"),
        ({"tps": None}, "carriers[0].tps: must be a positive number, got null"),
        ({"window": 0}, "carriers[0].window: must be an integer from 1 to 1000, got 0"),
        ({"window": 2.5}, "carriers[0].window: must be an integer from 1 to 1000, got 2.5"),
        ({"sessions": 0}, "carriers[0].sessions: must be an integer from 1 to 64, got 0"),
        ({"max_parts": 256}, "carriers[0].max_parts: must be an integer from 1 to 255, got 256"),
        ({"max_retries": -1}, "carriers[0].max_retries: must be an integer from 0 to 1000, got -1"),
        (
            {"bind": "tranceiver"},
            "carriers[0].bind: must be one of transceiver, transmitter_receiver, transmitter, "
            "got 'tranceiver'",
        ),
        ({"bind": "receiver"}, "carriers[0].bind: must be one of transceiver"),
        (
            {"coding": "utf8"},
            "carriers[0].coding: must be one of auto, gsm, latin1, ucs2, got 'utf8'",
        ),
        (
            {"concat": "udh"},
            "carriers[0].concat: must be one of udh8, udh16, sar, payload, got 'udh'",
        ),
        (
            {"submit_id_base": "hexadecimal"},
            "carriers[0].submit_id_base: must be one of string, hex, decimal, got 'hexadecimal'",
        ),
        (
            {"receipt_id_base": 16},
            "carriers[0].receipt_id_base: must be one of string, hex, decimal, got 16",
        ),
        (
            {"resend_on_timeout": "yes"},
            "carriers[0].resend_on_timeout: must be true or false, got 'yes'",
        ),
        (
            {"response_timeout": "10 sec"},
            "carriers[0].response_timeout: must be a positive duration: seconds, or a string like "
            '"500ms", "30s", "5m", "7d", got \'10 sec\'',
        ),
        ({"enquire_link_interval": 0}, "carriers[0].enquire_link_interval: must be a positive"),
        ({"retry_backoff": -1}, "carriers[0].retry_backoff: must be a non-negative duration"),
        ({"receipt_hold": True}, "carriers[0].receipt_hold: must be a non-negative duration"),
        (
            {"reconnect_min": "2m"},
            "carriers[0].reconnect_min: reconnect_max (60s) must not be less than "
            "reconnect_min (120s)",
        ),
        (
            {"reconnect_min": 5, "reconnect_max": 2},
            "carriers[0].reconnect_max: reconnect_max (2s) must not be less than "
            "reconnect_min (5s)",
        ),
        (
            {"throttle_backoff_max": 0.5},
            "carriers[0].throttle_backoff_max: throttle_backoff_max (0.5s) must not be less than "
            "throttle_backoff (1s)",
        ),
    ],
)
def test_carrier_field_errors(fields: dict[str, Any], message: str) -> None:
    found = only(with_carrier(**fields))
    assert found.startswith(message), found


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "VERYLONGBRANDNAME",
            "carriers[0].source.address: an alphanumeric sender has at most 11 characters, got 17",
        ),
        (
            {"address": "1" * 21},
            "carriers[0].source.address: a numeric sender has at most 20 digits, got 21",
        ),
        (
            {"address": "Shóp"},
            "carriers[0].source.address: an alphanumeric sender must be printable ASCII",
        ),
        ({"address": ""}, "carriers[0].source.address: must not be empty"),
        ({"ton": 5}, "carriers[0].source.address: required"),
        (
            {"address": "SHOP", "ton": 256},
            "carriers[0].source.ton: must be an integer from 0 to 255, got 256",
        ),
        (
            {"address": "SHOP", "npi": -1},
            "carriers[0].source.npi: must be an integer from 0 to 255, got -1",
        ),
        ({"address": "SHOP", "tom": 5}, "carriers[0].source.tom: unknown key; did you mean ton?"),
        (5, "carriers[0].source: must be a mapping of settings, got 5"),
    ],
)
def test_source_errors(source: object, message: str) -> None:
    found = only(with_carrier(source=source))
    assert found.startswith(message), found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("SHOPVN", SourceConfig("SHOPVN", 5, 0)),
        ({"address": "SHOPVN"}, SourceConfig("SHOPVN", 5, 0)),
        ({"address": "+84912345678"}, SourceConfig("84912345678", 1, 1)),
        ({"address": "8079", "ton": 3, "npi": 0}, SourceConfig("8079", 3, 0)),
        (None, None),
    ],
)
def test_source_ton_npi_follow_the_address(source: object, expected: SourceConfig) -> None:
    assert parse_config(with_carrier(source=source)).carriers[0].source == expected


@pytest.mark.parametrize(
    ("prefixes", "message"),
    [
        (
            [8486],
            'carriers[0].prefixes[0]: must be a quoted string of digits (like "8486"), got 8486',
        ),
        (
            ["+8486"],
            "carriers[0].prefixes[0]: must be in E.164 form without + or a leading 0 "
            "(like \"8486\"), got '+8486'",
        ),
        (
            ["0912"],
            "carriers[0].prefixes[0]: must be in E.164 form without + or a leading 0 "
            "(like \"8486\"), got '0912'",
        ),
        (["84-86"], "carriers[0].prefixes[0]: must be 1 to 15 digits, got '84-86'"),
        ([""], "carriers[0].prefixes[0]: must be 1 to 15 digits, got ''"),
        (["1" * 16], "carriers[0].prefixes[0]: must be 1 to 15 digits, got '1111111111111111'"),
        (["8486", "8496", "8486"], "carriers[0].prefixes[2]: duplicate prefix '8486'"),
        (
            "8486",
            'carriers[0].prefixes: must be a list of prefixes (like ["8486", "8496"]), '
            "got '8486'",
        ),
    ],
)
def test_prefix_errors(prefixes: object, message: str) -> None:
    assert only(with_carrier(prefixes=prefixes)) == message


def test_prefix_claimed_by_two_carriers_is_a_warning_naming_both() -> None:
    data = doc()
    data["carriers"].append(dict(data["carriers"][0], name="mobifone", prefixes=["8490", "8496"]))
    config = parse_config(data)
    assert config.warnings == (
        "carriers[1].prefixes[1]: prefix '8496' is claimed by both viettel (carriers[0]) "
        "and mobifone; viettel routes it (first in config order), mobifone takes its jobs "
        "only through failover",
    )


def test_duplicate_carrier_names() -> None:
    data = doc()
    data["carriers"].append(dict(data["carriers"][0], prefixes=["8490"]))
    assert only(data) == "carriers[1].name: duplicate carrier name 'viettel' (also carriers[0])"


def test_a_carrier_without_prefixes_is_sent_nothing() -> None:
    config = parse_config(with_carrier(prefixes=...))
    assert config.carriers[0].prefixes == ()
    assert "prefixes: none (no job is routed here, even when forced)" in summary(config)


def test_response_prefixes_correlation_cap_and_international_codes() -> None:
    config = parse_config(
        doc(
            mqtt={"response_prefixes": ["shop/replies", "crm/sms"], "max_correlation": 64},
            routing={"country_code": "84", "allow_international": ["1", "44"]},
        )
    )
    assert config.mqtt.response_prefixes == ("shop/replies", "crm/sms")
    assert config.mqtt.max_correlation == 64
    assert config.routing.allow_international == ("1", "44")
    text = summary(config)
    assert "response topics: shop/replies/…, crm/sms/…" in text
    assert "max correlation data 64 bytes" in text
    assert "international: +1, +44" in text
    defaults = parse_config(doc())
    assert defaults.mqtt.response_prefixes == () and defaults.mqtt.max_correlation == 256
    assert defaults.routing.allow_international == ()
    assert "international: refused" in summary(defaults)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            doc(mqtt={"response_prefixes": "shop/replies"}),
            "mqtt.response_prefixes: must be a list like [\"shop/replies\"], got 'shop/replies'",
        ),
        (
            doc(mqtt={"response_prefixes": ["shop/#"]}),
            "mqtt.response_prefixes[0]: must not contain the wildcards + or #",
        ),
        (
            doc(mqtt={"response_prefixes": ["$SYS"]}),
            "mqtt.response_prefixes[0]: must not start with $",
        ),
        (
            doc(mqtt={"response_prefixes": ["a/b", "a/b"]}),
            "mqtt.response_prefixes[1]: duplicate topic prefix 'a/b'",
        ),
        (
            doc(mqtt={"response_prefixes": ["sms/status/shop"]}),
            "mqtt.response_prefixes[0]: 'sms/status/shop' is inside the gateway's own topic "
            "tree (sms/status): replies there are always refused",
        ),
        (
            doc(mqtt={"status_topic": "gw/events", "response_prefixes": ["gw/events-unmatched"]}),
            "mqtt.response_prefixes[0]: 'gw/events-unmatched' is inside the gateway's own topic "
            "tree (gw/events-unmatched)",
        ),
        (
            doc(mqtt={"max_correlation": 70000}),
            "mqtt.max_correlation: must be an integer from 0 to 65535, got 70000",
        ),
        (
            doc(routing={"allow_international": "1"}),
            'routing.allow_international: must be a list like ["1", "44"], got \'1\'',
        ),
        (
            doc(routing={"allow_international": [1]}),
            "routing.allow_international[0]: must be 1 to 3 digits as a quoted string",
        ),
        (
            doc(routing={"allow_international": ["+44"]}),
            "routing.allow_international[0]: must be 1 to 3 digits",
        ),
        (
            doc(routing={"allow_international": ["84"]}),
            "routing.allow_international[0]: '84' is routing.country_code: national numbers "
            "need no entry",
        ),
        (
            doc(routing={"allow_international": ["44", "44"]}),
            "routing.allow_international[1]: duplicate country code '44'",
        ),
    ],
)
def test_intake_guard_key_errors(data: dict[str, Any], message: str) -> None:
    found = only(data)
    assert found.startswith(message), found


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"port": 0}, "mqtt.port: must be a port number from 1 to 65535, got 0"),
        ({"host": ""}, "mqtt.host: must not be empty"),
        ({"client_id": ""}, "mqtt.client_id: must not be empty"),
        ({"submit_topic": "sms/#"}, "mqtt.submit_topic: must not contain the wildcards + or #"),
        ({"status_topic": "sms/+/x"}, "mqtt.status_topic: must not contain the wildcards + or #"),
        ({"inbound_topic": ""}, "mqtt.inbound_topic: must not be empty"),
        ({"rejected_topic": None}, "mqtt.rejected_topic: must be a string, got null"),
        ({"cancel_topic": "sms/+"}, "mqtt.cancel_topic: must not contain the wildcards + or #"),
        ({"status_topic": "sms/status/"}, "mqtt.status_topic: must not start or end with /"),
        (
            {"submit_topic": "$share/g/sms/submit"},
            "mqtt.submit_topic: must not start with $ (use mqtt.shared_group to share a "
            "subscription)",
        ),
        ({"shared_group": "a/b"}, "mqtt.shared_group: must not contain /, +, # or NUL"),
        ({"shared_group": ""}, "mqtt.shared_group: must not be empty"),
        ({"keepalive": -1}, "mqtt.keepalive: must be an integer from 0 to 65535, got -1"),
        ({"max_payload": 0}, "mqtt.max_payload: must be an integer from 1 to 268435455, got 0"),
        (
            {"session_expiry": "100000d"},
            "mqtt.session_expiry: must be at most 4294967295 seconds (MQTT 5 limit)",
        ),
        ({"username": 5}, "mqtt.username: must be a string, got 5"),
        ({"tls": "yes"}, "mqtt.tls: must be a mapping of settings, got 'yes'"),
        ({"tls": {"verify": "no"}}, "mqtt.tls.verify: must be true or false, got 'no'"),
        (
            {"tls": {"ca_file": "/nonexistent/ca.pem"}},
            "mqtt.tls.ca_file: file not found: /nonexistent/ca.pem",
        ),
        ({"tls": {"cafile": "x"}}, "mqtt.tls.cafile: unknown key; did you mean ca_file?"),
    ],
)
def test_mqtt_errors(mqtt: dict[str, Any], message: str) -> None:
    assert only(doc(mqtt=mqtt)) == message


def test_tls_key_needs_a_cert(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("k")
    found = only(with_carrier(tls={"key_file": "k.pem"}), base_dir=tmp_path)
    assert found == "carriers[0].tls.key_file: needs cert_file"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            doc(log={"level": "verbose"}),
            "log.level: must be one of debug, info, warning, error, critical, got 'verbose'",
        ),
        (doc(log={"format": "text"}), "log.format: must be one of json, console, auto, got 'text'"),
        (
            doc(store={"writer": "fork"}),
            "store.writer: must be one of process, thread, auto, got 'fork'",
        ),
        (
            doc(metrics={"listen": "9464"}),
            'metrics.listen: must be "host:port" (like "127.0.0.1:9464") or null, got \'9464\'',
        ),
        (doc(metrics={"listen": "localhost:99999"}), 'metrics.listen: must be "host:port"'),
        (doc(metrics={"listen": "::1:9464"}), 'metrics.listen: must be "host:port"'),
        (doc(metrics={"listen": 9464}), 'metrics.listen: must be "host:port"'),
        (doc(metrics={"listen": ":9464"}), 'metrics.listen: must be "host:port"'),
        (doc(metrics={"listen": "127.0.0.1:0"}), 'metrics.listen: must be "host:port"'),
        (
            doc(routing={"country_code": 84}),
            'routing.country_code: must be 1 to 3 digits as a quoted string (like "84"), got 84',
        ),
        (doc(routing={"country_code": "+84"}), "routing.country_code: must be 1 to 3 digits"),
        (doc(routing={"country_code": "084"}), "routing.country_code: must be 1 to 3 digits"),
        (doc(routing={"country_code": "8412"}), "routing.country_code: must be 1 to 3 digits"),
        (doc(store={"path": ""}), "store.path: must not be empty"),
        (doc(store={"retention": 0}), "store.retention: must be a positive duration"),
        (doc(store={"keep_text": "no"}), "store.keep_text: must be true or false"),
        (doc(drain_timeout="soon"), "drain_timeout: must be a positive duration"),
    ],
)
def test_other_section_errors(data: dict[str, Any], message: str) -> None:
    found = only(data)
    assert found.startswith(message), found


def test_every_problem_is_reported_at_once() -> None:
    data = doc(mqtt={"port": 0, "hots": "x"}, log={"level": "loud"})
    data["carriers"][0].update(tps=0, window=0, bind="x", prefixes=["+1"])
    data["carriers"].append({"name": "viettel", "tsp": 1})
    found = problems(data)
    assert found == [
        "mqtt.hots: unknown key; did you mean host?",
        "mqtt.port: must be a port number from 1 to 65535, got 0",
        "log.level: must be one of debug, info, warning, error, critical, got 'loud'",
        "carriers[0].bind: must be one of transceiver, transmitter_receiver, transmitter, got 'x'",
        "carriers[0].tps: must be a positive number, got 0",
        "carriers[0].window: must be an integer from 1 to 1000, got 0",
        "carriers[0].prefixes[0]: must be in E.164 form without + or a leading 0 "
        "(like \"8486\"), got '+1'",
        "carriers[1].tsp: unknown key; did you mean tps?",
        "carriers[1].host: required",
        "carriers[1].port: required",
        "carriers[1].system_id: required",
        "carriers[1].password: required: set one of password, password_env, password_file",
        "carriers[1].name: duplicate carrier name 'viettel' (also carriers[0])",
    ]


# ---------------------------------------------------------------------- passwords


def test_password_is_required_for_a_carrier() -> None:
    assert only(with_carrier(password=...)) == (
        "carriers[0].password: required: set one of password, password_env, password_file"
    )


def test_only_one_password_source() -> None:
    assert only(with_carrier(password_env="X"), environ={"X": "y"}) == (
        "carriers[0].password: set only one of password, password_env, password_file "
        "(found password, password_env)"
    )


def test_password_from_env() -> None:
    data = with_carrier(password=..., password_env="VT_PW")
    secret = parse_config(data, environ={"VT_PW": PASSWORD}).carriers[0].password
    assert secret.reveal() == PASSWORD
    assert secret.origin == "env VT_PW"


@pytest.mark.parametrize(
    ("name", "environ", "message"),
    [
        ("VT_PW", {}, "carriers[0].password_env: environment variable VT_PW is not set"),
        ("VT_PW", {"VT_PW": ""}, "carriers[0].password_env: environment variable VT_PW is empty"),
        (
            "not a name",
            {},
            "carriers[0].password_env: must be an environment variable name, got 'not a name'",
        ),
        (5, {}, "carriers[0].password_env: must be an environment variable name, got 5"),
    ],
)
def test_password_env_errors(name: object, environ: dict[str, str], message: str) -> None:
    assert only(with_carrier(password=..., password_env=name), environ=environ) == message


def test_password_file_is_relative_to_the_config_and_loses_its_newline(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "viettel").write_text(PASSWORD + "\r\n")
    config_file = tmp_path / "gw.yaml"
    config_file.write_text(
        "carriers:\n"
        "  - {name: viettel, host: h, port: 1, system_id: s, password_file: secrets/viettel}\n"
        "mqtt: {username: shop, password_file: secrets/viettel}\n"
    )
    config = load_config(config_file, environ={})
    secret = config.carriers[0].password
    assert secret.reveal() == PASSWORD
    assert secret.origin == f"file {tmp_path / 'secrets' / 'viettel'}"
    assert config.mqtt.password == Secret(PASSWORD)


def test_a_password_file_others_can_read_is_a_warning_naming_file_and_mode(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "viettel"
    secret.write_text(PASSWORD)
    for mode, warned in ((0o644, True), (0o640, True), (0o604, True), (0o600, False)):
        secret.chmod(mode)
        config = parse_config(
            with_carrier(password=..., password_file="viettel"), base_dir=tmp_path
        )
        expected = (
            (
                f"carriers[0].password_file: {secret} is readable by group or others "
                f"(mode {mode:04o}); chmod 600 {secret}",
            )
            if warned
            else ()
        )
        assert config.warnings == expected
        assert PASSWORD not in repr(config.warnings)
    assert parse_config(with_carrier()).warnings == ()


def test_password_file_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe")
    assert only(with_carrier(password=..., password_file="missing"), base_dir=tmp_path) == (
        f"carriers[0].password_file: cannot read {tmp_path / 'missing'}: No such file or directory"
    )
    assert only(with_carrier(password=..., password_file="empty"), base_dir=tmp_path) == (
        f"carriers[0].password_file: {tmp_path / 'empty'} is empty"
    )
    assert only(with_carrier(password=..., password_file="binary"), base_dir=tmp_path) == (
        f"carriers[0].password_file: {tmp_path / 'binary'} is not UTF-8 text"
    )
    assert only(with_carrier(password=..., password_file=""), base_dir=tmp_path) == (
        "carriers[0].password_file: must be a file name, got ''"
    )


def test_mqtt_password_is_optional_but_still_only_one() -> None:
    assert parse_config(doc(mqtt={"username": "u"})).mqtt.password is None
    assert only(doc(mqtt={"password": "a", "password_file": "b"})) == (
        "mqtt.password: set only one of password, password_env, password_file "
        "(found password, password_file)"
    )


def test_password_errors_never_echo_the_value() -> None:
    for bad in (12345678, ["hunter2"], True):
        message = only(with_carrier(password=bad))
        assert message.startswith("carriers[0].password: must be a string (quote it in YAML)")
        assert "12345678" not in message and "hunter2" not in message
    message = only(with_carrier(password="hunt\x00er2"))
    assert message == (
        "carriers[0].password: must be Latin-1 text without NUL (SMPP C-Octet String)"
    )
    assert "hunt" not in message


def test_yaml_syntax_error_near_a_password_does_not_quote_it(tmp_path: Path) -> None:
    file = tmp_path / "gw.yaml"
    file.write_text('carriers:\n  - name: x\n    password: "hunter2\n    port: 1\n')
    found = problems_from_file(file)
    assert found == [
        "line 5, column 1: found unexpected end of stream (while scanning a quoted scalar)"
    ]
    assert "hunter2" not in "\n".join(found)


def test_secrets_never_in_summary_or_repr(tmp_path: Path) -> None:
    (tmp_path / "mqtt").write_text("mqtt-Secret-9\n")
    data = doc(mqtt={"username": "shop", "password_file": "mqtt"})
    data["carriers"].append(
        dict(data["carriers"][0], name="vina", prefixes=["8491"], password=..., password_env="V")
    )
    del data["carriers"][1]["password"]
    config = parse_config(data, base_dir=tmp_path, environ={"V": "vina-Secret-7"})
    text = summary(config)
    for secret in (PASSWORD, "mqtt-Secret-9", "vina-Secret-7"):
        assert secret not in text
        assert secret not in repr(config)
        assert secret not in str(config)
    assert "password=***" in text
    assert "password=from env V" in text
    assert f"password=from file {tmp_path / 'mqtt'}" in text


# ---------------------------------------------------------------------- YAML level


def test_yaml_error_reports_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "gw.yaml"
    file.write_text("carriers:\n  - name: x\n   host: y\n")
    (message,) = problems_from_file(file)
    assert message == (
        "line 3, column 4: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block collection)"
    )


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    file = tmp_path / "gw.yaml"
    file.write_text("carriers:\n  - name: x\n    port: 1\n    port: 2\n")
    assert problems_from_file(file) == [
        "line 4, column 5: found duplicate key 'port' (while constructing a mapping)"
    ]


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    file = tmp_path / "gw.yaml"
    file.write_text(
        "defaults: &d {host: smsc, port: 2775, system_id: shop, password: pw}\n"
        "carriers:\n"
        "  - {<<: *d, name: a, prefixes: ['8486']}\n"
        "  - {<<: *d, name: b, port: 2776}\n"
    )
    # "defaults" itself is not a known key: the error says so, the merge parsed.
    assert problems_from_file(file) == ["defaults: unknown key"]


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert problems_from_file(empty) == [
        "config: the file is empty; at least carriers: is required"
    ]
    missing = tmp_path / "missing.yaml"
    assert problems_from_file(missing) == [f"{missing}: cannot read: No such file or directory"]


# ---------------------------------------------------------------------- summary + CLI


def test_summary_lists_carriers_routes_and_topics() -> None:
    config = parse_config(doc(mqtt={"shared_group": "gw"}))
    text = summary(config)
    assert "viettel: 127.0.0.1:2775" in text
    assert "transceiver × 1 session, 10 tps, window 10" in text
    assert "8486     → viettel" in text
    assert "submit: sms/submit (shared as $share/gw/sms/submit)" in text
    assert "status: sms/status/<id>" in text
    assert "inbound: sms/inbound/<carrier>" in text
    assert "store: sqlite /var/lib/smppgw/smppgw.db" in text
    assert "metrics: http://127.0.0.1:9464/metrics" in text


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "gw.yaml"
    file.write_text(text)
    return file


GOOD = (
    "carriers:\n"
    f"  - {{name: viettel, host: h, port: 2775, system_id: s, password: {PASSWORD},"
    " prefixes: ['8486']}\n"
)


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path, GOOD)
    assert main(["check-config", str(file)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{file}: OK\n")
    assert "8486     → viettel" in out
    assert PASSWORD not in out + err
    assert err == ""


def test_check_config_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path, GOOD.replace("port: 2775", "port: 0, tsp: 5"))
    assert main(["check-config", str(file)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"{file}: 2 problems\n"
        "  carriers[0].tsp: unknown key; did you mean tps?\n"
        "  carriers[0].port: must be a port number from 1 to 65535, got 0\n"
    )


def test_check_config_subprocess(tmp_path: Path) -> None:
    good = write(tmp_path, GOOD)
    ok = subprocess.run(
        [sys.executable, "-m", "smppgw", "check-config", str(good)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr
    assert "routes (1, longest prefix wins)" in ok.stdout
    assert PASSWORD not in ok.stdout + ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("carriers: []\n")
    failed = subprocess.run(
        [sys.executable, "-m", "smppgw", "check-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert "carriers: at least one carrier is required" in failed.stderr


def test_configs_are_frozen() -> None:
    config = parse_config(doc())
    assert isinstance(config, Config)
    with pytest.raises(AttributeError):
        config.carriers[0].tps = 5  # type: ignore[misc]


def test_parse_does_not_mutate_its_input() -> None:
    data = doc()
    before = copy.deepcopy(data)
    parse_config(data)
    assert data == before


# ---------------------------------------------------------------------- error policy


def test_error_policy_overrides() -> None:
    policy = {"ESME_RSYSERR": "permanent", "RSUBMITFAIL": "Throttle", 0x400: "transient"}
    config = parse_config(with_carrier(error_policy=policy))
    assert config.carriers[0].error_policy == (
        ("ESME_RSYSERR", "permanent"),
        ("RSUBMITFAIL", "throttle"),
        ("1024", "transient"),
    )
    # What the carrier builds from it.
    assert ErrorPolicy(dict(config.carriers[0].error_policy)).classify(0x08) is Action.PERMANENT


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            {"ESME_NOPE": "permanent"},
            "carriers[0].error_policy.ESME_NOPE: 'ESME_NOPE' is not an SMPP command_status "
            "(a name like ESME_RSYSERR, or a number)",
        ),
        (
            {"ESME_RSYSERR": "ignore"},
            "carriers[0].error_policy.ESME_RSYSERR: must be one of permanent, transient, "
            "throttle, got 'ignore'",
        ),
        (
            {"ESME_RSYSERR": "permanent", 8: "transient"},
            "carriers[0].error_policy.8: the same status as ESME_RSYSERR",
        ),
        (
            ["ESME_RSYSERR"],
            "carriers[0].error_policy: must be a mapping of status to action "
            "(like ESME_RSYSERR: permanent), got a list",
        ),
    ],
)
def test_error_policy_errors(policy: object, message: str) -> None:
    assert only(with_carrier(error_policy=policy)) == message


# ---------------------------------------------------------------------- completeness


@pytest.mark.parametrize(
    ("cls", "keys"),
    [
        (Config, (*TOP_KEYS, "warnings")),  # warnings: what the parser noticed, not a key
        (MqttConfig, (*_MQTT_CHECKS, "password")),
        (CarrierConfig, (*_CARRIER_CHECKS, "password")),
        (StoreConfig, tuple(k for k in _STORE_KEYS if not k.endswith(("_env", "_file")))),
        (ClusterConfig, tuple(k for k in _CLUSTER_KEYS if not k.endswith(("_env", "_file")))),
        (MetricsConfig, _METRICS_KEYS),
        (LogConfig, _LOG_KEYS),
        (RoutingConfig, _ROUTING_KEYS),
        (TlsConfig, _TLS_KEYS),
        (SourceConfig, _SOURCE_KEYS),
    ],
)
def test_every_settings_field_is_parsed(cls: type, keys: tuple[str, ...]) -> None:
    """A field added to config/model.py without a parser here would be silently unsettable."""
    assert {f.name for f in dataclasses.fields(cls)} == set(keys)


# ---------------------------------------------------------------------- tenants


def test_tenants_default_to_none_and_a_name_only_tenant_has_no_limits() -> None:
    assert parse_config(doc()).tenants == ()
    [shop] = parse_config(doc(tenants=[{"name": "shop"}])).tenants
    assert shop == TenantConfig(name="shop")
    assert (shop.senders, shop.priorities, shop.rate, shop.daily_parts) == (None,) * 4
    assert shop.force_carrier is False  # choosing the carrier must be granted


def test_tenants_summary_names_topic_and_limits() -> None:
    config = parse_config(
        doc(tenants=[{"name": "shop", "rate": 20, "senders": ["SHOPVN"]}, {"name": "default"}])
    )
    text = summary(config)
    assert "shop: sms/submit/shop, senders SHOPVN" in text
    assert "rate 20/s" in text
    assert "default: sms/submit," in text


@pytest.mark.parametrize(
    ("tenant", "message"),
    [
        ({}, "tenants[0].name: required"),
        ({"name": "a/b"}, "tenants[0].name: must be 1 to 64 characters"),
        ({"name": "shop", "senders": []}, "tenants[0].senders: must be a non-empty list"),
        ({"name": "shop", "senders": [8079]}, "tenants[0].senders[0]: must be a quoted string"),
        (
            {"name": "shop", "senders": ["Vietcombank Ltd"]},
            "tenants[0].senders[0]: an alphanumeric sender has at most 11 characters",
        ),
        ({"name": "shop", "senders": ["A", "A"]}, "tenants[0].senders[1]: duplicate sender 'A'"),
        (
            {"name": "shop", "priorities": ["urgent"]},
            "tenants[0].priorities[0]: must be one of high, normal, low, got 'urgent'",
        ),
        ({"name": "shop", "priorities": "high"}, "tenants[0].priorities: must be a non-empty"),
        ({"name": "shop", "force_carrier": "yes"}, "tenants[0].force_carrier: must be true"),
        ({"name": "shop", "rate": 0}, "tenants[0].rate: must be a positive number, got 0"),
        ({"name": "shop", "daily_parts": 0}, "tenants[0].daily_parts: must be a positive integer"),
        ({"name": "shop", "max_queued": 1.5}, "tenants[0].max_queued: must be a positive integer"),
        ({"name": "shop", "rat": 5}, "tenants[0].rat: unknown key; did you mean rate?"),
    ],
)
def test_tenant_field_errors(tenant: dict[str, Any], message: str) -> None:
    assert only(doc(tenants=[tenant])).startswith(message)


def test_tenant_problems_are_all_reported_with_duplicates() -> None:
    found = problems(
        doc(tenants=[{"name": "shop", "rate": -1}, {"name": "shop"}, {"name": "x", "bogus": 1}])
    )
    assert found == [
        "tenants[0].rate: must be a positive number, got -1",
        "tenants[1].name: duplicate tenant name 'shop' (also tenants[0])",
        "tenants[2].bogus: unknown key",
    ]


def test_tenants_must_be_a_list() -> None:
    assert (
        only(doc(tenants={"name": "shop"})) == "tenants: must be a list of tenants, got a mapping"
    )


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:80", ("localhost", 80)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        # No host: refused rather than guessed (every interface? loopback?) for metrics.
        (":9464", "expected host:port"),
        ("9464", "expected host:port"),
        ("host:port", "the port must be a number"),
        ("127.0.0.1", "expected host:port"),
        ("127.0.0.1:70000", "the port must be a number up to 65535"),
        ("127.0.0.1:²", "the port must be a number"),
        ("::1:9464", "an IPv6 host needs brackets"),
    ],
)
def test_parse_listen_names_what_is_wrong(listen: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"listen address {re.escape(repr(listen))}: {problem}"):
        parse_listen(listen)


def test_parse_listen_uses_a_default_host_only_when_given_one() -> None:
    """The simulator's flags (``--listen :2775``) name a default host; the config does not."""
    assert parse_listen(":9464", "127.0.0.1") == ("127.0.0.1", 9464)
    assert parse_listen("9464", "127.0.0.1") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464", "127.0.0.1") == ("::1", 9464)
    with pytest.raises(ValueError, match="the port must be a number"):
        parse_listen("host:port", "127.0.0.1")


def test_ready_policy_is_read_and_defaults_to_all() -> None:
    assert parse_config(doc()).metrics.ready_policy is ReadyPolicy.ALL
    config = parse_config(doc(metrics={"ready_policy": "any"}))
    assert config.metrics == MetricsConfig(ready_policy=ReadyPolicy.ANY)
    assert parse_config(doc(metrics={"ready_policy": "none"})).metrics.ready_policy == "none"


def test_bad_ready_policy_and_bad_listen_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(doc(metrics={"listen": "9464", "ready_policy": "most"}))
    assert "metrics.ready_policy: must be one of all, any, none, got 'most'" in str(caught.value)
    assert "metrics.listen: must be" in str(caught.value)


# ---------------------------------------------------------------------- ctl


def test_ctl_defaults_to_an_owner_only_socket_under_run() -> None:
    ctl = parse_config(doc()).ctl
    assert (ctl.socket, ctl.allow_uids) == ("/run/smppgw/ctl.sock", ())


def test_ctl_socket_off_relative_and_allowed_uids(tmp_path: Path) -> None:
    assert parse_config(doc(ctl={"socket": None})).ctl.socket is None
    ctl = parse_config(
        doc(ctl={"socket": "ctl.sock", "allow_uids": [1000, 0]}), base_dir=tmp_path
    ).ctl
    assert (ctl.socket, ctl.allow_uids) == (str(tmp_path / "ctl.sock"), (1000, 0))


@pytest.mark.parametrize(
    ("ctl", "message"),
    [
        ({"socket": 5}, "ctl.socket: must be a string, got 5"),
        ({"socket": "/run/" + "x" * 120}, "ctl.socket: must be at most 107 bytes"),
        ({"allow_uids": 1000}, "ctl.allow_uids: must be a list of uids like [1000], got 1000"),
        ({"allow_uids": ["root"]}, "ctl.allow_uids[0]: must be an integer from 0 to"),
        ({"allow_uids": [-1]}, "ctl.allow_uids[0]: must be an integer from 0 to"),
        ({"sockt": "/x"}, "ctl.sockt: unknown key; did you mean socket?"),
    ],
)
def test_ctl_errors(ctl: dict[str, Any], message: str) -> None:
    assert only(doc(ctl=ctl)).startswith(message)


# ---------------------------------------------------------------------- failover (issue 15)


def test_failover_keys_parse_with_their_defaults() -> None:
    data = doc(routing={"ported_ttl": "7d"})
    data["carriers"].append(dict(data["carriers"][0], name="vinaphone", prefixes=["8491"]))
    data["carriers"][0].update(
        failover=["vinaphone"], failover_on=["ESME_RINVDSTADR", "0x45", 1025], failover_after="1m"
    )
    config = parse_config(data)
    viettel, vinaphone = config.carriers
    assert viettel.failover == ("vinaphone",)
    assert viettel.failover_on == (0x0B, 0x45, 0x401)
    assert (viettel.failover_after, viettel.failover_after_high) == (60.0, 5.0)
    assert (vinaphone.failover, vinaphone.failover_on) == ((), ())
    assert (vinaphone.failover_after, vinaphone.failover_after_high) == (30.0, 5.0)
    assert config.routing.ported_ttl == 7 * 86400 and config.routing.ported_file is None


def test_failover_errors_are_precise() -> None:
    data = doc(routing={"ported_ttl": 0, "ported_file": "/nonexistent/ported.csv"})
    data["carriers"][0].update(
        failover=["viettel", "vinafone", "viettel"],
        failover_on=["ESME_RNOPE", "ESME_ROK", True],
        failover_after="soon",
    )
    assert problems(data) == [
        "routing.ported_ttl: must be a positive duration: seconds, or a string like "
        '"500ms", "30s", "5m", "7d", got 0',
        "routing.ported_file: file not found: /nonexistent/ported.csv",
        "carriers[0].failover[2]: duplicate carrier 'viettel'",
        "carriers[0].failover_on[0]: 'ESME_RNOPE' is not an SMPP command_status (a name like "
        "ESME_RSYSERR, or a number)",
        "carriers[0].failover_on[1]: ESME_ROK is success, not a refusal",
        "carriers[0].failover_on[2]: must be an SMPP command_status (a name like "
        "ESME_RINVDSTADR, or a number)",
        "carriers[0].failover_after: must be a non-negative duration: seconds, or a string "
        'like "500ms", "30s", "5m", "7d", got \'soon\'',
    ]
    data = doc()
    data["carriers"][0].update(failover=["viettel", "vinafone"])
    assert problems(data) == [
        "carriers[0].failover[0]: 'viettel' is this carrier itself; list the carriers to try "
        "after it",
        "carriers[0].failover[1]: unknown carrier 'vinafone' (known: viettel)",
    ]
