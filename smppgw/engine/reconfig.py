"""What a reload changed in one carrier's config, and how each change is applied.

Only what identifies a bind to the SMSC needs a new bind: where it connects (host, port,
TLS), who it is (system_id, password, system_type, address_range) and how it binds (the
bind mode). ``sessions`` grows or shrinks the carrier one bind at a time. Everything else
(tps, window, texts, retries, timeouts, ...) is taken by the running carrier, its binds
staying up (:meth:`smppgw.engine.carrier.Carrier.reconfigure`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from smppgw.config import CarrierConfig

#: Fields that identify a bind: changing one drains the carrier and binds again.
IDENTITY: frozenset[str] = frozenset(
    {"host", "port", "system_id", "password", "system_type", "address_range", "bind", "tls"}
)


@dataclass(frozen=True, slots=True)
class CarrierChange:
    """The fields a reload changed, by how they apply (names only: no values, no secrets)."""

    rebind: tuple[str, ...]
    live: tuple[str, ...]
    #: New ``sessions`` minus old (0 when unchanged).
    sessions: int

    @property
    def any(self) -> bool:
        return bool(self.rebind or self.live or self.sessions)


def diff(old: CarrierConfig, new: CarrierConfig) -> CarrierChange:
    """Sort the fields that differ between ``old`` and ``new`` (one carrier, same name)."""
    changed = [
        f.name for f in fields(CarrierConfig) if getattr(old, f.name) != getattr(new, f.name)
    ]
    rebind = tuple(name for name in changed if name in IDENTITY)
    live = tuple(name for name in changed if name not in IDENTITY and name != "sessions")
    return CarrierChange(rebind=rebind, live=live, sessions=new.sessions - old.sessions)
