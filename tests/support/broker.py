"""A real mosquitto broker for tests: :class:`smppgw.mqtt.broker.Mosquitto`, plus users.

Why a real broker: the properties the gateway relies on (PUBACK timing, redelivery of
unacknowledged QoS 1 messages after a reconnect, persistent sessions surviving a broker
restart, Receive Maximum) are broker behaviour; a mock would only echo our assumptions.

What tests add to the shared class: authentication and ACLs (the security tests) and a
verbose log (tests read it, e.g. for "Saving in-memory database").
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smppgw.mqtt import broker
from smppgw.mqtt.broker import BrokerError, find_mosquitto, free_port

__all__ = ["Mosquitto", "MosquittoNotFound", "find_mosquitto", "free_port"]

MosquittoNotFound = BrokerError

VERBOSE = ("error", "warning", "notice", "information")


class Mosquitto(broker.Mosquitto):
    """Persistence on (``stop()`` then ``start()`` keeps sessions), a verbose log, and
    ``users`` (name → password) / ``acl`` (the text of an ``acl_file``, e.g.
    conf/mosquitto.acl) for tests of authentication."""

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str] | None = None,
        extra_config: str = "",
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        **settings: Any,
    ) -> None:
        extra = ["connection_messages true", "log_timestamp true"]
        if directory is not None:
            if users is not None:
                extra.append(f"password_file {_password_file(Path(directory), users)}")
            if acl is not None:
                (Path(directory) / "mosquitto.acl").write_text(acl)
                extra.append(f"acl_file {Path(directory) / 'mosquitto.acl'}")
        elif users is not None or acl is not None:
            raise ValueError("users and acl need a directory")
        if extra_config:
            extra.append(extra_config)
        super().__init__(
            directory=directory,
            log_types=VERBOSE,
            extra_lines=extra,
            allow_anonymous=users is None,
            **settings,
        )


def _password_file(directory: Path, users: Mapping[str, str]) -> Path:
    """A password file made with ``mosquitto_passwd -b``."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise MosquittoNotFound("mosquitto_passwd is not installed (apt-get install mosquitto)")
    path = directory / "passwd"
    path.touch(mode=0o600)
    for name, password in users.items():
        subprocess.run([tool, "-b", str(path), name, password], check=True, capture_output=True)
    return path
