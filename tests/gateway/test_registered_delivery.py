"""``carriers[].registered_delivery``: the receipt request of jobs that do not say ``dlr``.

Checked where it counts: the submit_sm's ``registered_delivery`` at the SMSC, and the
job's final status (``submitted`` when no receipt was asked for, since none will come).
"""

from __future__ import annotations

from pathlib import Path

from smppgw.sim.server import Simulator
from smppgw.store.model import JobState

from gateway.harness import Observer, gateway_config, running, sim_config
from support.broker import Mosquitto


async def test_jobs_without_dlr_follow_the_carrier_registered_delivery(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with Simulator(sim_config(receipt_delay=0.05, name="viettel")) as sim:
        config = gateway_config(
            tmp_path, mosquitto, {"viettel": sim}, carrier={"registered_delivery": False}
        )
        async with running(config) as gateway, Observer(mosquitto) as obs:
            await obs.submit(id="quiet", to="0981234567", text="no receipt asked")
            await obs.submit(id="asked", to="0981234568", text="receipt asked", dlr=True)
            # The job that asks for a receipt gets it; by then the other's is long due.
            await obs.wait_final(["asked"])
            quiet = await gateway.store.job("quiet")

    by_job = {s.pdu.destination_addr: s.pdu for s in sim.submits}
    assert by_job["84981234567"].registered_delivery == 0
    assert by_job["84981234568"].registered_delivery == 1
    assert [e["status"] for e in obs.statuses("quiet")] == ["submitted"]
    assert [e["status"] for e in obs.statuses("asked")] == ["submitted", "delivered"]
    assert sim.counters.receipts_sent == 1
    assert quiet is not None
    assert (quiet.dlr, quiet.state, quiet.status) == (False, JobState.FINAL.label, "submitted")
