"""A carrier's configuration as the SMPP library's bind parameters.

:mod:`smppgw.smpp` knows nothing of the gateway's config: its :class:`BindParams` are plain
values (the password revealed, TLS as a ready ``SSLContext``). This is the one place that
translates, so a new carrier setting that a bind needs is added here and in ``BindParams``.
"""

from __future__ import annotations

from dataclasses import replace

from smppgw.config import CarrierConfig
from smppgw.smpp.session import BindParams
from smppgw.tls import client_context


def bind_params(config: CarrierConfig, mode: str) -> BindParams:
    """The parameters of one ``mode`` bind (transmitter, receiver, transceiver) to ``config``."""
    identity = BindParams(
        name=config.name,
        host=config.host,
        port=config.port,
        system_id=config.system_id,
        password=config.password.reveal(),
        system_type=config.system_type,
        address_range=config.address_range,
        mode=mode,
        ssl=client_context(config.tls) if config.tls else None,
    )
    return retuned(identity, config)


def retuned(params: BindParams, config: CarrierConfig) -> BindParams:
    """``params`` with what a reload may change without a new bind taken from ``config``:
    the window, timeouts and reconnect back-off (the identity, and TLS context, kept)."""
    return replace(
        params,
        window=config.window,
        enquire_link=config.enquire_link_interval,
        response_timeout=config.response_timeout,
        bind_timeout=config.bind_timeout,
        frame_timeout=config.frame_timeout,
        reconnect_min=config.reconnect_min,
        reconnect_max=config.reconnect_max,
    )
