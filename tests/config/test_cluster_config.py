"""``store.backend`` / ``store.dsn[_env/_file]`` / ``store.lease`` and ``cluster:``: precise
errors naming the field, secrets never shown (errors, summary, repr)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from smppgw.config import ConfigError, StoreBackend
from smppgw.config.loader import parse_config
from smppgw.config.summary import summary

DSN = "postgresql://smppgw:Pa55word@db/smppgw"
REDIS = "redis://:R3dispw@cache:6379/0"


def doc(**top: Any) -> dict[str, Any]:
    carrier = {
        "name": "viettel",
        "host": "127.0.0.1",
        "port": 2775,
        "system_id": "shopvn",
        "password": "x",
        "prefixes": ["8486"],
    }
    return {"carriers": [carrier], **top}


def problems(data: object, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kwargs)
    return info.value.problems


def test_defaults_are_sqlite_and_the_hostname() -> None:
    config = parse_config(doc())
    assert config.store.backend is StoreBackend.SQLITE and config.store.dsn is None
    assert config.store.lease == 15.0
    assert config.cluster.node_id == socket.gethostname() and config.cluster.redis is None


def test_postgres_from_each_source_and_never_shown(tmp_path: Path) -> None:
    inline = parse_config(doc(store={"backend": "postgres", "dsn": DSN, "lease": "20s"}))
    assert inline.store.dsn is not None and inline.store.dsn.reveal() == DSN
    assert inline.store.lease == 20.0
    env = parse_config(
        doc(store={"backend": "postgres", "dsn_env": "PGURL"}), environ={"PGURL": DSN}
    )
    assert env.store.dsn is not None and env.store.dsn.reveal() == DSN
    file = tmp_path / "dsn"
    file.write_text(DSN + "\n")
    file.chmod(0o600)
    from_file = parse_config(doc(store={"backend": "postgres", "dsn_file": str(file)}))
    assert from_file.store.dsn is not None and from_file.store.dsn.reveal() == DSN
    for config in (inline, env, from_file):
        text = summary(config) + repr(config)
        assert "Pa55word" not in text and "smppgw:" not in text.split("store:")[1][:40]
    assert "dsn from env PGURL" in summary(env)
    assert f"dsn from file {file}" in summary(from_file)
    assert "store: postgres, dsn ***" in summary(inline)


def test_cluster_section_and_redis_never_shown() -> None:
    config = parse_config(doc(cluster={"node_id": "gw-a", "redis_env": "R"}), environ={"R": REDIS})
    assert config.cluster.node_id == "gw-a"
    assert config.cluster.redis is not None and config.cluster.redis.reveal() == REDIS
    text = summary(config)
    assert "cluster: node gw-a, tps shared by the cluster through redis from env R" in text
    assert "R3dispw" not in text + repr(config)


@pytest.mark.parametrize(
    ("top", "environ", "message"),
    [
        (
            {"store": {"backend": "postgres"}},
            {},
            "store.dsn: required: set one of dsn, dsn_env, dsn_file",
        ),
        ({"store": {"backend": "mysql"}}, {}, "store.backend: must be one of sqlite, postgres"),
        (
            {"store": {"dsn": DSN}},
            {},
            "store.dsn: is only used with backend: postgres",
        ),
        (
            {"store": {"backend": "postgres", "dsn": DSN, "dsn_env": "X"}},
            {},
            "store.dsn: set only one of dsn, dsn_env, dsn_file (found dsn, dsn_env)",
        ),
        (
            {"store": {"backend": "postgres", "dsn_env": "NOPE"}},
            {},
            "store.dsn_env: environment variable NOPE is not set",
        ),
        (
            {"store": {"backend": "postgres", "dsn": "mysql://u:Pa55word@h/d"}},
            {},
            "store.dsn: must be a URL starting with postgresql:// (value not shown)",
        ),
        ({"store": {"lease": "0.5s"}}, {}, "store.lease: must be at least 1s, got '0.5s'"),
        ({"store": {"lease": "soon"}}, {}, "store.lease: "),
        ({"cluster": {"node_id": "gw a"}}, {}, "cluster.node_id: must be 1-64 of"),
        (
            {"cluster": {"redis": "http://:R3dispw@cache"}},
            {},
            "cluster.redis: must be a redis://, rediss:// or unix:// URL (value not shown)",
        ),
        ({"cluster": {"redus": "x"}}, {}, "cluster.redus: unknown key"),
    ],
)
def test_errors_name_the_field_and_hide_the_secret(
    top: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    found = problems(doc(**top), environ=environ)
    assert len(found) == 1, found
    assert found[0].startswith(message), found
    assert "Pa55word" not in found[0] and "R3dispw" not in found[0]


def test_max_binds_needs_the_shared_store() -> None:
    data = doc()
    data["carriers"][0]["max_binds"] = 2
    assert problems(data) == [
        "carriers[0].max_binds: needs store.backend: postgres (one gateway's binds are its"
        " sessions)"
    ]
    data["store"] = {"backend": "postgres", "dsn": DSN}
    assert parse_config(data).carriers[0].max_binds == 2
    data["carriers"][0]["max_binds"] = 0
    assert problems(data)[0].startswith("carriers[0].max_binds: ")
