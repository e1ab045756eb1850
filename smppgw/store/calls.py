"""``Call``: a store operation with its arguments in order, as the writer runs it.

The hot operations (a job's intake, claim, in-flight mark, submit, receipt, the outbox's
read and ack) go to the writer as ``Call(fn, *args)`` instead of a ``functools.partial``
with keyword arguments: the operation takes ``tx`` first, which a partial cannot put
before its bound arguments, and a partial's keywords pickle as a dict, names and all.
With the writer in a process every operation is pickled in the event loop and unpickled
in the writer: ~55 against ~32 bytes a ``mark_submitted``, 2.7 against 1.2 µs to pickle
and 1.8 against 1.0 µs to unpickle (docs/performance.md, step 43). With the writer thread
it is called in place, as a partial is.
"""

from __future__ import annotations

import copyreg
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from smppgw.store.batch import Tx

T = TypeVar("T")


class Call(Generic[T]):
    """``fn(tx, *args)`` when called with the batch's ``tx``. ``fn`` must pickle by
    reference (a module-level function) and ``args`` by value, for the writer process."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self.fn = fn
        self.args = args

    def __call__(self, tx: Tx) -> T:
        return self.fn(tx, *self.args)

    def __repr__(self) -> str:
        return f"Call({getattr(self.fn, '__qualname__', self.fn)!r}, {len(self.args)} args)"


def _reduce(call: Call[Any]) -> tuple[type[Call[Any]], tuple[Any, ...]]:
    return Call, (call.fn, *call.args)


copyreg.pickle(Call, _reduce)
