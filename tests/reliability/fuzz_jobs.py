"""Coverage-guided fuzzing of the job decoder with atheris (by hand, not in CI).

    .venv/bin/python tests/reliability/fuzz_jobs.py -max_total_time=300 [corpus_dir]

What counts as a crash: ``decode_job()`` raising anything but ``JobError``, or a decoded
job that ``to_outbound()`` turns into anything but an ``OutboundMessage``, a
``RoutingError`` or a ``JobError``.
"""

from __future__ import annotations

import sys
import time

import atheris

with atheris.instrument_imports():
    from smppgw.mqtt.schema import JobError, decode_job, to_outbound
    from smppgw.pipeline.routing import RoutingError, normalize_msisdn


def one_input(data: bytes) -> None:
    try:
        job = decode_job(data)
    except JobError:
        return
    try:
        destination = normalize_msisdn(job.to, "84")
        to_outbound(job, destination, time.time(), country_code="84")
    except (RoutingError, JobError):
        pass


SEEDS = [
    b'{"id":"o-1","to":"0981234567","text":"Don 1984 da giao"}',
    b'{"id":"o-2","to":"+84981234567","text":"xin ch\\u00e0o","from":"SHOPVN",'
    b'"priority":"high","dlr":false,"ttl":300,"carrier":"viettel"}',
    b'{"id":"o-3","to":"84912345678","text":"OTP 123456","from":"8100"}',
    b'{"id":"o-4","to":"0981234567","text":"\\ud83d"}',
]


def seed_corpus(directory: str) -> None:
    import os

    os.makedirs(directory, exist_ok=True)
    if not os.listdir(directory):
        for i, seed in enumerate(SEEDS):
            with open(os.path.join(directory, f"seed-{i}"), "wb") as fh:
                fh.write(seed)


if __name__ == "__main__":
    dirs = [a for a in sys.argv[1:] if not a.startswith("-")]
    if dirs:
        seed_corpus(dirs[0])
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
