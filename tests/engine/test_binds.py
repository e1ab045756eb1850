"""engine.binds: a CarrierConfig becomes the SMPP library's BindParams, field by field."""

from __future__ import annotations

import ssl

from smppgw.config import CarrierConfig, Secret, TlsConfig
from smppgw.engine.binds import bind_params


def _config(**overrides: object) -> CarrierConfig:
    base: dict[str, object] = {
        "name": "acme",
        "host": "smsc.example",
        "port": 2775,
        "system_id": "shop",
        "password": Secret("pw-secret"),
        "system_type": "VMA",
        "address_range": "^49",
        "window": 7,
        "enquire_link_interval": 12.5,
        "response_timeout": 3.0,
        "bind_timeout": 4.0,
        "frame_timeout": 5.0,
        "reconnect_min": 0.5,
        "reconnect_max": 9.0,
    }
    base.update(overrides)
    return CarrierConfig(**base)  # type: ignore[arg-type]


def test_every_bind_setting_is_carried_over() -> None:
    params = bind_params(_config(), "receiver")
    assert (params.name, params.host, params.port, params.mode) == (
        "acme",
        "smsc.example",
        2775,
        "receiver",
    )
    assert (params.system_id, params.password, params.system_type, params.address_range) == (
        "shop",
        "pw-secret",
        "VMA",
        "^49",
    )
    assert params.window == 7
    assert params.enquire_link == 12.5
    assert (params.response_timeout, params.bind_timeout, params.frame_timeout) == (3.0, 4.0, 5.0)
    assert (params.reconnect_min, params.reconnect_max) == (0.5, 9.0)
    assert params.ssl is None
    assert "pw-secret" not in repr(params)


def test_tls_becomes_a_client_context_honouring_verify() -> None:
    checked = bind_params(_config(tls=TlsConfig()), "transceiver").ssl
    assert isinstance(checked, ssl.SSLContext)
    assert checked.verify_mode == ssl.CERT_REQUIRED and checked.check_hostname
    unchecked = bind_params(_config(tls=TlsConfig(verify=False)), "transceiver").ssl
    assert isinstance(unchecked, ssl.SSLContext)
    assert unchecked.verify_mode == ssl.CERT_NONE and not unchecked.check_hostname
