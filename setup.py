"""Optional mypyc build of the hot modules (``SMPPGW_COMPILE=1 pip install .``).

Without ``SMPPGW_COMPILE=1`` this is a plain setuptools build of the pure-Python package
(pyproject.toml holds the metadata). With it, the modules in ``COMPILED`` are compiled to C
extension modules by mypyc (part of mypy) and need a C compiler and the Python headers.
The compiled modules behave like the pure ones; they only cost less CPU.
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILED = [
    "smppgw/smpp/framing.py",
    "smppgw/smpp/fields.py",
    "smppgw/smpp/tlv.py",
    "smppgw/smpp/codec.py",
    "smppgw/smpp/receipt.py",
    "smppgw/smpp/session.py",
    "smppgw/smpp/text/coding.py",
    "smppgw/smpp/text/gsm7.py",
    "smppgw/smpp/text/ucs2.py",
    "smppgw/smpp/text/segment.py",
    "smppgw/engine/carrier.py",
    "smppgw/engine/lanes.py",
    "smppgw/engine/throttle.py",
    "smppgw/engine/matching.py",
    "smppgw/engine/receipts.py",
    "smppgw/engine/results.py",
    "smppgw/engine/pdus.py",
    "smppgw/engine/job.py",
    "smppgw/engine/message.py",
    "smppgw/engine/observers.py",
    "smppgw/engine/context.py",
    "smppgw/engine/mo.py",
    "smppgw/pipeline/intake.py",
    "smppgw/pipeline/outcomes.py",
    "smppgw/pipeline/outbox.py",
    "smppgw/pipeline/feeder.py",
    "smppgw/store/ops.py",
]


def _ext_modules() -> list[object]:
    if os.environ.get("SMPPGW_COMPILE", "") not in ("1", "true", "yes"):
        return []
    from mypyc.build import mypycify

    return list(mypycify(COMPILED, opt_level="3"))


setup(ext_modules=_ext_modules())
