"""A session needs only its :class:`BindParams`: no gateway config, against a real simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smppgw.sim.server import SimAccount, SimConfig, Simulator
from smppgw.smpp.constants import Status
from smppgw.smpp.pdu import DataSm, DeliverSm, SubmitSm, SubmitSmResp
from smppgw.smpp.session import BindParams, Session, SessionKeeper


class _NoMo:
    async def deliver(self, session: Session, pdu: DeliverSm | DataSm) -> int:
        return Status.ESME_ROK


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimConfig(accounts=[SimAccount("lib", "s3cret")]))
    await simulator.start()
    yield simulator
    await simulator.stop(unbind_timeout=0.2)


async def _bound(keeper: SessionKeeper) -> Session:
    async with asyncio.timeout(5):
        while not keeper.bound:
            await asyncio.sleep(0.01)
    assert keeper.session is not None
    return keeper.session


async def test_a_keeper_binds_and_submits_with_plain_params(sim: Simulator) -> None:
    params = BindParams(
        name="lib", host="127.0.0.1", port=sim.port, system_id="lib", password="s3cret",
        mode="transmitter", window=3, response_timeout=2.0,
    )  # fmt: skip
    keeper = SessionKeeper(params, _NoMo(), name="lib/tx")
    keeper.start()
    try:
        session = await _bound(keeper)
        assert (session.mode, session.window) == ("transmitter", 3)
        result = await session.request(SubmitSm(destination_addr="491701", short_message=b"hi"))
        assert isinstance(result, SubmitSmResp) and result.status == Status.ESME_ROK
        assert [s.pdu.short_message for s in sim.submits] == [b"hi"]
    finally:
        await keeper.stop(1.0)


async def test_a_wrong_password_in_the_params_is_refused(sim: Simulator) -> None:
    params = BindParams(
        name="lib", host="127.0.0.1", port=sim.port, system_id="lib", password="wrong",
        reconnect_min=0.05, reconnect_max=0.1,
    )  # fmt: skip
    keeper = SessionKeeper(params, _NoMo(), name="lib/trx")
    keeper.start()
    try:
        async with asyncio.timeout(5):
            while not keeper.bind_refusals:
                await asyncio.sleep(0.01)
        assert "ESME_RINVPASWD" in keeper.last_error
        assert not keeper.bound
    finally:
        await keeper.stop(1.0)


def test_params_never_show_the_password() -> None:
    params = BindParams(name="c", host="h", port=1, system_id="u", password="hunter2")
    assert "hunter2" not in repr(params)
    assert "hunter2" not in str(params)


def test_an_unknown_bind_mode_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'both'"):
        BindParams(name="c", host="h", port=1, system_id="u", mode="both")


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, made by openssl for this run."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("smpp-tls")
    proc = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem",
         "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=d, capture_output=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    return d / "cert.pem", d / "key.pem"


@pytest.fixture
async def tls_front(
    sim: Simulator, self_signed: tuple[Path, Path]
) -> AsyncIterator[tuple[int, Path]]:
    """A TLS terminator in front of the simulator, as an SMSC's TLS port is: (port, CA file)."""
    cert, key = self_signed
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sim_reader, sim_writer = await asyncio.open_connection("127.0.0.1", sim.port)
        for task in (pipe(reader, sim_writer), pipe(sim_reader, writer)):
            pipes.add(asyncio.create_task(task))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    yield server.sockets[0].getsockname()[1], cert
    server.close()
    for task in pipes:
        task.cancel()
    await asyncio.gather(*pipes, return_exceptions=True)


async def test_the_params_tls_context_is_used_and_verifies(
    sim: Simulator, tls_front: tuple[int, Path]
) -> None:
    port, ca = tls_front
    trusting = ssl.create_default_context(cafile=str(ca))
    params = BindParams(
        name="lib", host="127.0.0.1", port=port, system_id="lib", password="s3cret",
        ssl=trusting, reconnect_min=0.05, reconnect_max=0.1,
    )  # fmt: skip
    keeper = SessionKeeper(params, _NoMo(), name="lib/tls")
    keeper.start()
    try:
        session = await _bound(keeper)
        result = await session.request(SubmitSm(destination_addr="491702", short_message=b"tls"))
        assert isinstance(result, SubmitSmResp) and result.status == Status.ESME_ROK
        assert [s.pdu.short_message for s in sim.submits] == [b"tls"]
    finally:
        await keeper.stop(1.0)

    # The same port with a context that does not trust the certificate never binds.
    untrusting = dataclasses.replace(params, ssl=ssl.create_default_context())
    keeper = SessionKeeper(untrusting, _NoMo(), name="lib/tls-untrusted")
    keeper.start()
    try:
        async with asyncio.timeout(5):
            while keeper.connect_attempts < 2:
                await asyncio.sleep(0.01)
        assert "CERTIFICATE_VERIFY_FAILED" in keeper.last_error
        assert keeper.binds == 0
    finally:
        await keeper.stop(1.0)


async def test_unanswered_requests_time_out_each_after_response_timeout(sim: Simulator) -> None:
    """Requests with the default timeout share one deadline queue (one timer, not one per
    submit_sm): each unanswered one still ends ``NoResponse`` its own ``response_timeout``
    after it was sent, in send order, and an answered one in between is not touched."""
    params = BindParams(
        name="lib", host="127.0.0.1", port=sim.port, system_id="lib", password="s3cret",
        mode="transmitter", window=10, response_timeout=0.4,
    )  # fmt: skip
    keeper = SessionKeeper(params, _NoMo(), name="lib/tx")
    keeper.start()
    try:
        session = await _bound(keeper)
        loop = asyncio.get_running_loop()
        ended: dict[str, float] = {}

        def request(name: str) -> asyncio.Future[object]:
            fut = session.request(SubmitSm(destination_addr="491701", short_message=b"x"))
            fut.add_done_callback(lambda _f: ended.setdefault(name, loop.time()))
            return fut  # type: ignore[return-value]

        start = loop.time()
        sim.config.faults.no_response_fraction = 1.0
        first = request("first")
        await asyncio.sleep(0.15)
        sim.config.faults.no_response_fraction = 0.0
        answered = await request("answered")
        sim.config.faults.no_response_fraction = 1.0
        second = request("second")
        results = await asyncio.gather(first, second)
        assert isinstance(answered, SubmitSmResp) and answered.status == Status.ESME_ROK
        assert all(type(r).__name__ == "NoResponse" for r in results)
        assert ended["answered"] - start < 0.3
        # each after its own 0.4 s (uvloop timers: millisecond resolution)
        assert 0.39 <= ended["first"] - start < 1.0
        assert ended["second"] - ended["first"] >= 0.14
        assert session.timeouts == 2
    finally:
        sim.config.faults.no_response_fraction = 0.0
        await keeper.stop(1.0)


async def test_a_request_due_before_those_queued_times_out_first(sim: Simulator) -> None:
    """A shorter timeout than the requests already waiting (an explicit one, or a reload
    that shortened ``response_timeout``) ends at its own deadline, not behind theirs."""
    params = BindParams(
        name="lib", host="127.0.0.1", port=sim.port, system_id="lib", password="s3cret",
        mode="transmitter", window=10, response_timeout=1.0,
    )  # fmt: skip
    keeper = SessionKeeper(params, _NoMo(), name="lib/tx")
    keeper.start()
    try:
        session = await _bound(keeper)
        loop = asyncio.get_running_loop()
        sim.config.faults.no_response_fraction = 1.0
        start = loop.time()
        slow = session.request(SubmitSm(destination_addr="491701", short_message=b"a"))
        session.retune(dataclasses.replace(params, response_timeout=0.2))
        quick = session.request(SubmitSm(destination_addr="491701", short_message=b"b"))
        await quick
        quick_ended = loop.time() - start
        assert not slow.done()  # still within its own 1 s
        await slow
        slow_ended = loop.time() - start
        assert type(quick.result()).__name__ == type(slow.result()).__name__ == "NoResponse"
        assert 0.19 <= quick_ended < 0.8
        assert slow_ended >= 0.99
    finally:
        sim.config.faults.no_response_fraction = 0.0
        await keeper.stop(1.0)
