"""Refused destinations (``--reject-dest``): how the simulator imitates a ported number.

On the wire a refused destination gets a submit_sm_resp with the chosen status and no
receipt, the longest matching prefix decides, and the table changes at run time through the
control port; the flags and the YAML key build the same table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest

from smppgw.cli import main
from smppgw.sim.cli import configs_from_args
from smppgw.sim.config import SimConfigError, configs_from_mapping
from smppgw.sim.rejects import DestRejects, parse_entry
from smppgw.sim.server import SimAccount, SimConfig, Simulator
from smppgw.smpp.constants import Status
from smppgw.smpp.pdu import DeliverSm

from sim.client import RawClient
from sim.test_sim_cli import parse, start
from sim.test_sim_control import http

PORTED = "84961110000"  # under 8496111: refused with ESME_RINVDSTADR
PORTED_EXACT = "84961112223"  # its own entry: the longer prefix wins
ON_NET = "84961000000"  # under neither


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(
        accounts=[SimAccount("shop", "pw")],
        control_port=0,
        reject_dest={"8496111": Status.ESME_RINVDSTADR, PORTED_EXACT: Status.ESME_RSUBMITFAIL},
    )
    async with Simulator(config) as simulator:
        yield simulator


async def test_refused_destination_gets_its_status_and_no_receipt(sim: Simulator) -> None:
    client = await RawClient.connect(sim.port)
    await client.bind("shop", "pw")
    refused = await client.submit(destination_addr=PORTED, registered_delivery=1)
    exact = await client.submit(destination_addr=PORTED_EXACT, registered_delivery=1)
    accepted = await client.submit(destination_addr=ON_NET, registered_delivery=1)
    assert refused.status == Status.ESME_RINVDSTADR
    assert refused.message_id == ""  # type: ignore[attr-defined]
    assert exact.status == Status.ESME_RSUBMITFAIL
    assert accepted.status == 0
    receipt = await client.deliver()
    assert receipt.destination_addr == "SHOPVN" and receipt.source_addr == ON_NET
    with pytest.raises(TimeoutError):  # no receipt for either refused submit
        await client.expect(lambda p: isinstance(p, DeliverSm), timeout=0.5)
    assert [s.pdu.destination_addr for s in sim.submits] == [ON_NET]
    counters = sim.counters
    assert counters.submits_dest_refused == 2 and counters.submits_rejected == 2
    assert counters.submits_accepted == 1
    await client.close()


async def test_refusal_does_not_use_up_the_throttle_window() -> None:
    config = SimConfig(accounts=[SimAccount("a", "a", tps=1)], reject_dest={"8496111": 0x0B})
    async with Simulator(config) as sim:
        client = await RawClient.connect(sim.port)
        await client.bind("a", "a")
        assert (await client.submit(destination_addr=PORTED)).status == Status.ESME_RINVDSTADR
        assert (await client.submit(destination_addr=ON_NET)).status == 0
        assert (await client.submit(destination_addr=ON_NET)).status == Status.ESME_RTHROTTLED
        await client.close()


async def test_control_port_adds_lists_and_removes_refusals(sim: Simulator) -> None:
    client = await RawClient.connect(sim.port)
    await client.bind("shop", "pw")
    status, body = await http(sim, "POST", "/reject-dest", {"dest": ON_NET, "status": "0x0B"})
    assert status == 200 and body["reject_dest"][ON_NET] == "0x0000000B"
    assert (await client.submit(destination_addr=ON_NET)).status == Status.ESME_RINVDSTADR
    expected = {PORTED_EXACT: "0x00000045", ON_NET: "0x0000000B", "8496111": "0x0000000B"}
    for path in ("/reject-dest", "/config"):
        assert (await http(sim, "GET", path))[1]["reject_dest"] == expected
    stats = (await http(sim, "GET", "/stats"))[1]
    assert stats["reject_dest"] == expected and stats["submits_dest_refused"] == 1
    status, body = await http(sim, "DELETE", f"/reject-dest/{ON_NET}")
    assert status == 200 and ON_NET not in body["reject_dest"]
    assert (await client.submit(destination_addr=ON_NET)).status == 0
    status, body = await http(sim, "DELETE", "/reject-dest/8496111")
    assert status == 200 and list(body["reject_dest"]) == [PORTED_EXACT]
    assert (await client.submit(destination_addr=PORTED)).status == 0
    await client.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "code", "message"),
    [
        ("POST", "/reject-dest", {"dest": "84+96", "status": 11}, 400, "'84+96' must be 1-20"),
        ("POST", "/reject-dest", {"dest": "8496", "status": 0}, 400, "non-zero"),
        ("POST", "/reject-dest", {"dest": "8496", "status": "ESME_RNOPE"}, 400, "ESME_RNOPE"),
        ("POST", "/reject-dest", {"dest": "8496"}, 400, "got ['dest']"),
        ("POST", "/reject-dest", {"dest": "8496", "status": [1]}, 400, "[1]"),
        ("DELETE", "/reject-dest/8490", None, 404, "'8490' is not refused"),
        ("PUT", "/reject-dest", {}, 405, "use GET"),
    ],
)
async def test_control_port_bad_requests_name_the_problem(
    sim: Simulator, method: str, path: str, body: object, code: int, message: str
) -> None:
    status, answer = await http(sim, method, path, body)
    assert status == code and message in answer["error"]
    assert sim.rejects.as_json() == {PORTED_EXACT: "0x00000045", "8496111": "0x0000000B"}
    assert (await http(sim, "GET", "/healthz"))[0] == 200  # still serving


def test_longest_prefix_wins_and_remove_reindexes() -> None:
    rejects = DestRejects({"84": 1, "8496": 2, "8496111": 3})
    assert [rejects.match(n) for n in ("8491", "84965", "849611199", "8396", "8")] == [
        1,
        2,
        3,
        0,
        0,
    ]
    assert rejects.remove("8496111") and not rejects.remove("8496111")
    assert rejects.match("849611199") == 2
    assert not DestRejects() and DestRejects().match("84") == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8496111:0x0B", ("8496111", 0x0B)),
        ("8496111:11", ("8496111", 11)),
        ("8496111:esme_rinvdstadr", ("8496111", 0x0B)),
        (" 84961112223 : 0x45 ", ("84961112223", 0x45)),
    ],
)
def test_flag_entries(text: str, expected: tuple[str, int]) -> None:
    assert parse_entry(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8496111", "expected PREFIX:STATUS"),
        ("8496111:", "expected PREFIX:STATUS"),
        (":0x0B", "prefix '' must be"),
        ("8496a:0x0B", "prefix '8496a' must be"),
        ("8496:0", "8496: status '0' must be a non-zero"),
        ("8496:0x1FFFFFFFF", "non-zero command_status"),
        ("8496:ESME_RNOPE", "8496: status 'ESME_RNOPE'"),
    ],
)
def test_bad_flag_entries_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(SimConfigError, match=re.escape(message)):
        parse_entry(text)


def test_flags_build_the_table() -> None:
    (config,) = configs_from_args(
        parse("--reject-dest", "8496111:0x0B", "--reject-dest", "84961112223:ESME_RSUBMITFAIL")
    )
    assert config.reject_dest == {"8496111": 0x0B, "84961112223": Status.ESME_RSUBMITFAIL}
    with pytest.raises(SimConfigError, match="drop --reject-dest"):
        configs_from_args(parse("--config", "x.yaml", "--reject-dest", "84:1"))


def test_yaml_key_builds_the_table() -> None:
    raw = {
        "defaults": {"reject_dest": {"8496111": "ESME_RINVDSTADR"}},
        "smscs": {
            "viettel": {},
            "vinaphone": {"reject_dest": ["8491:0x45", "84912345678:11"]},
            "mobifone": {"reject_dest": None},
        },
    }
    viettel, vinaphone, mobifone = configs_from_mapping(raw)
    assert viettel.reject_dest == {"8496111": 0x0B}
    assert vinaphone.reject_dest == {"8491": 0x45, "84912345678": 0x0B}
    assert mobifone.reject_dest == {}
    with pytest.raises(SimConfigError, match=re.escape("smscs.v: reject_dest: prefix '84 9'")):
        configs_from_mapping({"smscs": {"v": {"reject_dest": {"84 9": 11}}}})
    with pytest.raises(SimConfigError, match="expected a mapping of prefix to status"):
        configs_from_mapping({"smscs": {"v": {"reject_dest": "8496:11"}}})


def test_bad_flag_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--reject-dest", "8496111:ESME_RNOPE"]) == 2
    assert "reject_dest: 8496111: status 'ESME_RNOPE'" in capsys.readouterr().err


async def test_process_refuses_flagged_destination_and_control_port_lifts_it() -> None:
    proc, lines = start(
        "--listen", "127.0.0.1:0",
        "--accounts", "shop:pw",
        "--reject-dest", "8496111:0x0B",
        "--control", "127.0.0.1:0",
    )  # fmt: skip
    with killed_at_exit(proc):
        text = "\n".join(lines)
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        control = re.search(r"control on (http://127\.0\.0\.1:\d+)", text)
        assert port and control, lines
        client = await RawClient.connect(int(port.group(1)))
        await client.bind("shop", "pw")
        assert (await client.submit(destination_addr=PORTED)).status == Status.ESME_RINVDSTADR

        def delete() -> object:
            request = urllib.request.Request(
                f"{control.group(1)}/reject-dest/8496111", method="DELETE"
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())

        assert await asyncio.to_thread(delete) == {"reject_dest": {}}
        assert (await client.submit(destination_addr=PORTED)).status == 0
        await client.close()
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 10) == 0


@contextlib.contextmanager
def killed_at_exit(proc: subprocess.Popen[str]) -> Iterator[None]:
    """However the test ends, no simulator process outlives it."""
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
