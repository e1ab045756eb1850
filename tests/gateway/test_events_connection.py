"""The outbox publishes on an MQTT connection of its own (issue 13, step 72): on the
intake's, an event's PUBACK queued behind the jobs the broker streams to the gateway, and
while intake held that connection's reads (``receive_maximum`` handlers waiting for the
store) an outbox round waited up to 1.2 s in a 20,000-job burst."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from smppgw.config import MqttConfig
from smppgw.gateway import events_client_id
from smppgw.sim.server import Simulator
from smppgw.store import OutboxEvent

from gateway.harness import Observer, gateway_config, running, sim_config
from support.broker import Mosquitto


async def test_events_are_acknowledged_while_intake_holds_its_reads(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with Simulator(sim_config()) as sim:
        config = gateway_config(tmp_path, mosquitto, {"viettel": sim})
        async with running(config) as gw, Observer(mosquitto) as obs:
            # What intake does while receive_maximum handlers wait for the store: the
            # intake connection's read loop stops before its next read, and with it
            # everything that connection would read (jobs, and the PUBACKs of what was
            # published on it). The loop is inside a read now: the job below is the last
            # packet it reads.
            # In a burst the gate stays shut while jobs keep coming; here the one job's
            # handler would reopen it as it finishes, so it is held shut (its ``set``
            # does nothing) until the end.
            gate = gw.mqtt._read_gate
            gate.clear()
            reopen = gate.set
            gate.set = lambda: None  # type: ignore[method-assign]
            try:
                await obs.submit(id="e-1", to="0981234567", text="held reads")
                await obs.wait_final(["e-1"])
                await gw.store.add_events(
                    [OutboxEvent("sms/status/e-2", b'{"id":"e-2","status":"queued"}')]
                )
                gw.outbox.wake()
                await obs.wait_for(lambda: bool(obs.statuses("e-2")))
                deadline = time.monotonic() + 5.0
                while await gw.store.outbox_size():  # deleted: their PUBACKs were read
                    assert time.monotonic() < deadline, "events published, never acknowledged"
                    await asyncio.sleep(0.05)
                assert not gate.is_set()  # the intake connection read nothing meanwhile
            finally:
                gate.set = reopen  # type: ignore[method-assign]
                gate.set()
            assert gw.health.readiness().ok


def test_the_events_connection_has_a_client_id_no_tenant_connection_can_have() -> None:
    """A tenant's connection is ``<client_id>.<tenant>``; the outbox's is apart."""
    assert events_client_id(MqttConfig(client_id="gw-1")) == "gw-1-events"
