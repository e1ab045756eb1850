"""Held jobs and reply windows live in the store: ``kill -9`` of the gateway loses neither.

Jobs held for ``send_at`` come due while the gateway is dead; the restarted gateway
releases each exactly once. A job's ``expect_reply`` window opened before the kill still
ties the customer's answer to it afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from reliability.stack import GatewayProc, Observer, SimProc, carrier_entry, job
from support.broker import Mosquitto

HELD = 20


async def test_held_jobs_and_reply_windows_survive_kill9(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim = SimProc(tmp_path / "sim", receipt_delay=0.1).start()
    gw = GatewayProc(tmp_path / "gw", mosquitto, [carrier_entry(sim)])
    ids = [f"held-{i:06d}" for i in range(HELD)]
    try:
        async with Observer(mosquitto) as obs:
            await gw.start()
            cod = {"id": "cod-1", "to": "0981234567", "text": "Reply 1", "expect_reply": 600}
            await obs.publish(cod)
            await obs.wait_final(["cod-1"], timeout=20)
            due = time.time() + 3.0
            await obs.publish_many(job("held", i, send_at=due) for i in range(HELD))
            await obs.wait_for(
                lambda: all(obs.statuses.get(i) for i in ids), 20, "scheduled events"
            )
            gw.kill9()
            await asyncio.sleep(max(0.0, due - time.time()) + 0.5)
            assert len(await sim.asubmits()) == 1  # only cod-1: nothing was released
            await gw.start()
            await obs.wait_final(ids, timeout=20)
            await sim.amo("84981234567", "8079", "1")
            await obs.wait_for(lambda: bool(obs.replies.get("cod-1")), 20, "the reply")
            submits = await sim.asubmits()
    finally:
        gw.close()
        sim.stop()
    sent = Counter(s.text for s in submits)
    assert all(sent[f"held job {i:06d}"] == 1 for i in range(HELD)), sent
    for job_id in ids:
        # Events are at least once: one published just before the kill, its PUBACK not
        # yet recorded, is published again by the next run.
        seen = list(dict.fromkeys(s.status for s in obs.statuses[job_id]))
        assert seen == ["scheduled", "submitted", "delivered"]
    (reply,) = obs.replies["cod-1"]
    assert reply["in_reply_to"] == "cod-1" and reply["text"] == "1"
