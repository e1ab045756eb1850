"""The configuration: YAML read once, at start and on SIGHUP, into frozen dataclasses.

- :mod:`~smppgw.config.model`: the dataclasses every other module consumes (re-exported
  here, with :class:`ConfigError` and :func:`parse_listen`);
- :mod:`~smppgw.config.reader`: the generic validator that records every problem at once;
- :mod:`~smppgw.config.sections`: each section's fields and checks;
- :mod:`~smppgw.config.loader`: the YAML file → :class:`Config` (``load_config``,
  ``parse_config``);
- :mod:`~smppgw.config.summary`: the config in words, for ``smppgw check-config``.

The loader and the summary are not re-exported: they use the routing and envelope rules of
the pipeline, whose modules import the model from here, so importing them from this
``__init__`` would make every ``from smppgw.config import CarrierConfig`` a circular import.
"""

from smppgw.config.model import (
    BindMode,
    CarrierConfig,
    ClusterConfig,
    Config,
    ConsentConfig,
    CtlConfig,
    LogConfig,
    LogFormat,
    MetricsConfig,
    MqttConfig,
    RoutingConfig,
    Secret,
    SourceConfig,
    StoreBackend,
    StoreConfig,
    TenantConfig,
    TlsConfig,
)
from smppgw.config.reader import ConfigError, parse_listen

__all__ = [
    "BindMode",
    "CarrierConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "ConsentConfig",
    "CtlConfig",
    "LogConfig",
    "LogFormat",
    "MetricsConfig",
    "MqttConfig",
    "RoutingConfig",
    "Secret",
    "SourceConfig",
    "StoreBackend",
    "StoreConfig",
    "TenantConfig",
    "TlsConfig",
    "parse_listen",
]
