"""Codec benchmark: submit_sm encodes and DLR decodes a second on one core.

Run it directly (``.venv/bin/python tests/perf/bench_codec.py [seconds]``), through the
command (``smppgw bench codec``), or as a performance gate with pytest
(``.venv/bin/pytest -o addopts= tests/perf/bench_codec.py``; the normal suite skips
tests/perf because figures on a busy CI box say little). The workload itself lives in
:mod:`smppgw.commands.bench_codec` so that an installed gateway can measure its machine
too; this file is the test-side entry point.
"""

from __future__ import annotations

import sys

from smppgw.commands.bench_codec import (
    DECODE_TARGET,
    ENCODE_TARGET,
    CodecFigures,
    format_table,
    measure,
    sample_dlr_frame,
    sample_submit_sm,
)
from smppgw.smpp.codec import decode, encode


def bench_codec(seconds: float = 2.0, *, smpplib: bool = True) -> CodecFigures:
    """Measure and return the figures (PDUs a second), ``seconds`` per figure."""
    return measure(seconds, smpplib=smpplib)


def test_codec_meets_targets() -> None:
    # The measured PDUs are the realistic ones the figures claim to be.
    pdu = sample_submit_sm()
    assert decode(encode(pdu)) == pdu and pdu.data_coding == 8 and pdu.esm_class == 0x40
    assert decode(sample_dlr_frame()).esm_class == 0x04
    fig = bench_codec(1.0, smpplib=False)
    print("\n" + format_table(fig))
    assert fig.encode_submit_sm >= ENCODE_TARGET
    assert fig.decode_dlr >= DECODE_TARGET


if __name__ == "__main__":
    print(format_table(bench_codec(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)))
