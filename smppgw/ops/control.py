"""What each ``smppgw ctl`` request does inside the running gateway.

The commands read state the gateway already keeps (carrier counters, the store's queue
counters, the outbox size), so ``status`` costs the gateway microseconds and one store
round trip, whatever the load. Commands that change something (``pause``, ``resume``,
``jobs.cancel``, ``jobs.requeue``, ``reload``) are logged as ``ctl_command`` with the
peer's uid, so the journal says who did what.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from smppgw.engine.message import Priority
from smppgw.ops.ctl import Request, RequestError
from smppgw.ops.logs import get_logger
from smppgw.store import JobState, JobView

if TYPE_CHECKING:
    from smppgw.gateway import Gateway

log = get_logger("smppgw.ctl")

#: Most jobs one ``jobs.list`` returns.
MAX_LIST = 1000
LANES = {p.name.lower(): int(p) for p in Priority}
STATES = {s.label: s for s in JobState}


class Control:
    """The commands, bound to one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway
        self._commands: dict[str, Callable[[Request], Awaitable[object]]] = {
            "status": self.status,
            "pause": self.pause,
            "resume": self.resume,
            "jobs.list": self.jobs_list,
            "jobs.show": self.jobs_show,
            "jobs.cancel": self.jobs_cancel,
            "jobs.requeue": self.jobs_requeue,
            "reload": self.reload,
        }

    async def handle(self, request: Request) -> object:
        command = self._commands.get(request.command)
        if command is None:
            known = ", ".join(self._commands)
            raise RequestError(
                f"unknown command {request.command!r} (one of {known})", invalid=True
            )
        return await command(request)

    # ------------------------------------------------------------------ reading

    async def status(self, request: Request) -> dict[str, Any]:
        gw = self._gw
        depths = await gw.store.queue_depths()
        now = time.monotonic()
        carriers: dict[str, Any] = {}
        for name, carrier in gw.carriers.items():
            stats = carrier.stats()
            feeder = gw.feeders.get(name)
            carriers[name] = {
                "binds_up": stats["binds_up"],
                "binds_total": stats["binds_configured"],
                "paused": feeder.paused if feeder is not None else False,
                "throttled": stats["paused"],
                "tps_limit": carrier.config.tps,
                "tps_in_use": carrier.throttle.in_use(now),
                "window_in_use": stats["window_in_use"],
                "window_size": stats["window_size"],
                "in_memory": sum(stats["queued"].values()) + stats["retrying"],
                "queued": {lane: depths.get((name, number), 0) for lane, number in LANES.items()},
            }
        held = {t: n for t, n in gw.tenants.metrics.holding.items() if n}
        return {
            "carriers": carriers,
            "held": held,
            "held_total": sum(held.values()),
            "outbox": await gw.store.outbox_size(),
            "dead_events": gw.store.dead_events_count(),
            # Jobs held until a time (status scheduled), by reason: send_at, window, cap.
            "scheduled": gw.store.held_counts(),
            # Both of the gateway's connections (jobs in, events out), and each.
            "mqtt_connected": all(gw.mqtt_connections.values()),
            "mqtt_connections": gw.mqtt_connections,
        }

    async def jobs_list(self, request: Request) -> list[dict[str, Any]]:
        args = request.args
        carrier = _optional_str(args, "carrier")
        state = _choice(args, "state", STATES)
        lane = _choice(args, "lane", LANES)
        limit = args.get("limit", 50)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST:
            raise RequestError(f"limit must be an integer from 1 to {MAX_LIST}, got {limit!r}")
        views = await self._gw.store.list_jobs(
            carrier=carrier,
            state=None if state is None else STATES[state],
            lane=None if lane is None else LANES[lane],
            limit=limit,
        )
        return [job_record(view) for view in views]

    async def jobs_show(self, request: Request) -> dict[str, Any]:
        job_id = _job_id(request.args)
        view = await self._gw.store.job(job_id)
        if view is None:
            raise RequestError(f"no job {job_id!r}")
        return job_record(view)

    # ------------------------------------------------------------------ changing

    async def pause(self, request: Request) -> dict[str, Any]:
        return self._switch(request, paused=True)

    async def resume(self, request: Request) -> dict[str, Any]:
        return self._switch(request, paused=False)

    def _switch(self, request: Request, *, paused: bool) -> dict[str, Any]:
        name = _carrier(request.args, self._gw.carriers)
        was = name in self._gw.paused
        _logged(request, was_paused=was)
        self._gw.set_paused(name, paused)
        return {"carrier": name, "paused": paused, "changed": was != paused}

    async def jobs_cancel(self, request: Request) -> dict[str, Any]:
        job_id = _job_id(request.args)
        _logged(request)
        view, cancelled = await self._gw.events.cancel(job_id)
        if view is None:
            raise RequestError(f"no job {job_id!r}")
        if not cancelled:
            raise RequestError(
                f"job {job_id!r} is {_where(view)}: "
                "only a job still queued or scheduled can be cancelled"
            )
        return job_record(view)

    async def jobs_requeue(self, request: Request) -> dict[str, Any]:
        job_id = _job_id(request.args)
        if request.args.get("confirm_never_sent") is not True:
            raise RequestError(
                f"job {job_id!r}: requeue sends it again; confirm with --confirm-never-sent "
                "that the SMSC never got it (its logs, or the carrier)"
            )
        _logged(request)
        view, moved = await self._gw.store.requeue_unknown(job_id)
        if view is None:
            raise RequestError(f"no job {job_id!r}")
        if not moved:
            if (view.status, view.error_code) == ("failed", "unknown_outcome"):
                raise RequestError(
                    f"job {job_id!r}: its text was not kept (store.keep_text is false), so it "
                    "cannot be sent again; publish it anew with a new id"
                )
            raise RequestError(
                f"job {job_id!r} is {_where(view)}: only a job that ended failed with "
                "unknown_outcome can be requeued"
            )
        assert view.carrier is not None
        self._gw.wake_feeder(view.carrier)
        return job_record(view)

    async def reload(self, request: Request) -> dict[str, Any]:
        if self._gw.config_path is None:
            raise RequestError("the gateway was started without a config file: nothing to reload")
        _logged(request)
        if not await self._gw.reload():
            raise RequestError("the config file was refused; the running config stays (see log)")
        return {"reloaded": True, "carriers": list(self._gw.carriers)}


def _logged(request: Request, **details: Any) -> None:
    """Every command that changes state, with who asked."""
    log.info("ctl_command", uid=request.uid, command=request.command, args=request.args, **details)


def _where(view: JobView) -> str:
    if view.status is None:
        return view.state
    return view.status + (f" ({view.error_code})" if view.error_code else "")


def _job_id(args: dict[str, Any]) -> str:
    job_id = args.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise RequestError("id: a job id is required", invalid=True)
    return job_id


def _optional_str(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is not None and not isinstance(value, str):
        raise RequestError(f"{key} must be a string, got {value!r}", invalid=True)
    return value


def _choice(args: dict[str, Any], key: str, options: dict[str, Any]) -> str | None:
    value = _optional_str(args, key)
    if value is not None and value not in options:
        raise RequestError(f"{key} must be one of {', '.join(options)}, got {value!r}")
    return value


def _carrier(args: dict[str, Any], carriers: dict[str, Any]) -> str:
    name = _optional_str(args, "carrier")
    if name is None:
        raise RequestError("carrier: a carrier name is required", invalid=True)
    if name not in carriers:
        raise RequestError(f"no carrier {name!r} (configured: {', '.join(carriers)})")
    return name


def job_record(view: JobView) -> dict[str, Any]:
    """A job as JSON: times in UTC ISO 8601, Correlation Data in hex; never its text."""
    record = asdict(view)
    record["correlation_data"] = (
        None if view.correlation_data is None else view.correlation_data.hex()
    )
    record["lane"] = Priority(view.lane).name.lower()
    for key in ("received_at", "expires_at", "done_at", "held_until", "send_at"):
        value = record[key]
        record[key] = None if value is None else _iso(value)
    return record


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
