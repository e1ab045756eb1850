"""The PostgreSQL and Redis fixtures themselves: real servers on loopback, private
directories, restartable, and gone after ``close()``."""

from __future__ import annotations

import os
import socket

import pytest

from support.servers import Postgres, Redis, find_postgres_bin, find_redis


def _redis_ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64)


def test_postgres_databases_are_fresh_and_isolated(postgres_server: Postgres) -> None:
    a = postgres_server.create_database()
    b = postgres_server.create_database()
    name_a = a.rsplit("/", 1)[1]
    postgres_server.query("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", name_a)
    assert postgres_server.query("SELECT count(*) FROM t", name_a) == "1"
    tables = "SELECT count(*) FROM pg_tables WHERE tablename = 't'"
    assert postgres_server.query(tables, b.rsplit("/", 1)[1]) == "0"
    postgres_server.drop_database(a)
    postgres_server.drop_database(b)
    assert postgres_server.query("SHOW listen_addresses") == "127.0.0.1"


def test_postgres_restarts_after_kill_9_on_its_port_and_close_removes_it() -> None:
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = Postgres().start()
    try:
        dsn = server.create_database("kept")
        server.query("CREATE TABLE t (x int); INSERT INTO t VALUES (7)", "kept")
        server.kill()
        assert not server.running
        server.start()  # crash recovery, same port
        assert server.query("SELECT x FROM t", "kept") == "7"
        assert dsn.endswith(f":{server.port}/kept")
    finally:
        server.close()
    assert not server.running
    assert not os.path.exists(server.dir)


def test_redis_answers_on_loopback_and_restarts_on_its_port() -> None:
    if find_redis() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = Redis().start()
    try:
        assert _redis_ping(server.port) == b"+PONG\r\n"
        server.kill()
        with pytest.raises(OSError):
            _redis_ping(server.port)
        server.start()
        assert _redis_ping(server.port) == b"+PONG\r\n"
    finally:
        server.close()
    assert not os.path.exists(server.dir)
