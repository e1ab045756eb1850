"""Scenario 7: hostile job payloads end to end (broker, ``smppgw run``, ``smppgw sim``).

Wrong types, huge texts, invalid UTF-8, control characters, a 10 MB payload, JSON nested
100,000 deep, and a few hundred random JSON documents, interleaved with good jobs. Each
payload with a usable id gets exactly one final status (``rejected`` with a reason when it
is not a job); one without a usable id is answered on ``sms/rejected``. The gateway never
stops, and every good job is delivered.

Unit-level fuzzing of ``decode_job`` is in tests/mqtt/test_schema.py; this adds the whole path
(MQTT, intake, store, outbox) under the same inputs.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from reliability.conftest import size
from reliability.stack import job, running
from support.broker import Mosquitto


def _hostile() -> list[tuple[str | None, bytes]]:
    """(id the gateway should answer on, or None for garbage; payload)."""
    ok = {"to": "0981234567", "text": "hello"}

    def j(job_id: str, **fields: Any) -> tuple[str, bytes]:
        return job_id, json.dumps({"id": job_id, **fields}).encode()

    cases: list[tuple[str | None, bytes]] = [
        j("h-int-to", to=84981234567, text="x"),
        j("h-list-text", to="0981234567", text=["a", "b"]),
        j("h-obj-priority", **ok, priority={"level": "high"}),
        j("h-str-dlr", **ok, dlr="yes"),
        j("h-neg-ttl", **ok, ttl=-5),
        j("h-float-ttl", **ok, ttl=1.5),
        j("h-huge-ttl", **ok, ttl=10**30),
        j("h-bool-carrier", **ok, carrier=True),
        j("h-unknown-carrier", **ok, carrier="nosuch"),
        j("h-bad-to", to="not a number", text="x"),
        j("h-long-from", **ok, **{"from": "X" * 40}),
        j("h-empty-text", to="0981234567", text="   "),
        j("h-huge-text", to="0981234567", text="a" * 50_000),
        j("h-too-many-parts", to="0981234567", text="b" * 5_000),
        j("h-null-text", to="0981234567", text=None),
        ("h-lone-surrogate", b'{"id":"h-lone-surrogate","to":"0981234567","text":"\\ud83d"}'),
        # Over max_payload (64 KiB) but within the Maximum Packet Size: refused by id. A
        # far bigger job never reaches the gateway (tests/security/test_intake_guards.py).
        (
            "h-over-max-payload",
            b'{"id":"h-over-max-payload","to":"0981234567","text":"' + b"z" * 70_000 + b'"}',
        ),
        (None, b'{"to":"0981234567","text":"no id"}'),
        (None, b'{"id":"has space","to":"0981234567","text":"x"}'),
        (None, b'{"id":' + b"7" * 100 + b',"text":"x"}'),
        (None, b'{"id":"' + b"i" * 65 + b'","to":"0981234567","text":"x"}'),
        (None, b"\xff\xfe\x00garbage"),
        (None, b'{"id":"h-bad-utf8","to":"0981234567","text":"\xc3\x28"}'),
        (None, b""),
        (None, b"null"),
        (None, b"[1,2,3]"),
        (None, b'"just a string"'),
        (None, b"{" * 10),
        # Deep nesting, within max_payload and just over it. Packets far over it are
        # dropped by the broker (Maximum Packet Size, tests/security/test_intake_guards.py).
        (None, b"[" * 30_000 + b"]" * 30_000),
        (None, b'{"a":' * 12_000 + b"1" + b"}" * 12_000),
        (None, b'{"id":"h-nan","to":"0981234567","text":NaN}'),
        (None, b"\x00" * 1000),
    ]
    # Control characters and odd Unicode are text: sent (as UCS2 when they must be) or
    # refused with a reason, never a crash.
    for i, text in enumerate(
        ["\x00\x01\x02 nul", "\x1b[31mred\x1b[0m", "tab\there\r\nnew", "\u202eevil", "😀" * 100]
    ):
        cases.append(j(f"h-ctrl-{i}", to="0981234567", text=text))
    return cases


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 1.5, -0.0, 10**20])
    if kind == 3:
        return "".join(
            chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)]))
            for _ in range(rng.randrange(0, 30))
        )
    if kind == 4:
        return rng.choice(["0981234567", "+84981234567", "high", "normal", "", "viettel"])
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    keys = ["id", "to", "text", "from", "carrier", "priority", "dlr", "ttl", "x"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(0, 8))}


def _random_payloads(rng: random.Random, n: int) -> list[tuple[str | None, bytes]]:
    out: list[tuple[str | None, bytes]] = []
    for i in range(n):
        value = _random_json(rng)
        if isinstance(value, dict) and rng.random() < 0.6:
            job_id = f"fz-{i:05d}"
            value["id"] = job_id
            out.append((job_id, json.dumps(value).encode()))
        elif rng.random() < 0.2:
            out.append((None, rng.randbytes(rng.randrange(1, 200))))
        else:
            if isinstance(value, dict) and "id" in value:
                value["id"] = [value["id"]]  # never a usable id: garbage for sure
            out.append((None, json.dumps(value).encode()))
    return out


@pytest.mark.timeout(size(180, 1200))
async def test_hostile_payloads_are_refused_clearly_and_good_jobs_still_flow(
    tmp_path: Path, mosquitto: Mosquitto, report
) -> None:
    seed = int(os.environ.get("SMPPGW_FUZZ_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    hostile = _hostile() + _random_payloads(rng, size(300, 5000))
    rng.shuffle(hostile)
    n_good = size(200, 2000)
    good = [f"ok-{i:06d}" for i in range(n_good)]
    async with running(tmp_path, mosquitto, carrier={"tps": 300}) as run:
        pending = list(hostile)
        for i in range(n_good):
            await run.obs.publish(job("ok", i))
            for _ in range(len(hostile) // n_good + 1):
                if pending:
                    await run.obs.publish_raw(pending.pop()[1])
        for _, payload in pending:
            await run.obs.publish_raw(payload)
        with_id = [job_id for job_id, _ in hostile if job_id is not None]
        garbage = sum(1 for job_id, _ in hostile if job_id is None)
        await run.obs.wait_final(good + with_id, timeout=size(90, 600))
        await run.obs.wait_for(lambda: len(run.obs.rejected) >= garbage, 30, "sms/rejected")
        assert run.gw.alive
        rss = run.gw.note_rss()
        ledger = await run.finish(good)
    obs = run.obs
    conflicting = {j: set(obs.finals[j]) for j in with_id if len(obs.finals[j]) != 1}
    outcome = {j: next(iter(obs.finals[j])) for j in with_id if j not in conflicting}
    reasons = {
        j: next((s.code for s in obs.statuses[j] if s.status == "rejected"), None) for j in with_id
    }
    named = {j: outcome.get(j) for j, _ in _hostile() if j is not None}
    report(
        scenario="hostile job payloads end to end",
        seed=seed,
        payloads=len(hostile),
        with_usable_id=len(with_id),
        without_usable_id=garbage,
        published_on_sms_rejected=len(obs.rejected),
        outcomes_of_named_cases=named,
        rejected_codes=dict(
            sorted(
                {
                    c: sum(1 for r in reasons.values() if r == c) for c in set(reasons.values())
                }.items(),
                key=lambda kv: str(kv[0]),
            )
        ),
        peak_rss_mb=round(rss / 2**20, 1),
        good_jobs=ledger.summary()["outcomes"],
    )
    assert not conflicting, conflicting
    ledger.assert_clean(allow_unknown=False)
    assert ledger.outcomes == {"delivered": n_good}
    assert len(obs.rejected) >= garbage
    # The named invalid cases are refused with a reason, not sent.
    for job_id, status in named.items():
        if job_id.startswith("h-ctrl-"):
            assert status in ("delivered", "rejected"), (job_id, status)
        else:
            assert status == "rejected", (job_id, status)
            assert reasons[job_id], job_id
