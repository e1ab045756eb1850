"""What the gateway will do with a config, in words, for ``smppgw check-config``."""

from __future__ import annotations

from smppgw.config.model import Config, Secret, SourceConfig, StoreBackend, TlsConfig
from smppgw.pipeline.routing import Router
from smppgw.smpp.constants import status_name


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def _password(secret: Secret | None) -> str:
    if secret is None:
        return "none"
    if secret.origin:
        return f"from {secret.origin}"
    return "***"


def _tls(tls: TlsConfig | None) -> str:
    if tls is None:
        return "off"
    parts = ["on"]
    if tls.ca_file:
        parts.append(f"ca {tls.ca_file}")
    if tls.cert_file:
        parts.append(f"client cert {tls.cert_file}")
    if not tls.verify:
        parts.append("NOT VERIFIED")
    return ", ".join(parts)


def _source(source: SourceConfig | None) -> str:
    if source is None:
        return "none (jobs must set from)"
    return f"{source.address} (ton {source.ton}, npi {source.npi})"


def _store(config: Config) -> str:
    store = config.store
    kept = f"finished jobs kept {_seconds(store.retention)}, " + (
        "texts kept too" if store.keep_text else "texts blanked once submitted"
    )
    if store.backend is StoreBackend.POSTGRES:
        # The DSN may carry a password: only where it comes from is shown.
        return (
            f"store: postgres, dsn {_password(store.dsn)} ({kept}; a dead gateway's jobs are "
            f"taken over after lease {_seconds(store.lease)})"
        )
    return f"store: sqlite {store.path} ({kept})"


def _cluster(config: Config) -> str:
    cluster = config.cluster
    if cluster.redis is None:
        limit = "each gateway holds each carrier's tps on its own (no cluster.redis)"
    else:
        limit = f"tps shared by the cluster through redis {_password(cluster.redis)}"
    return f"cluster: node {cluster.node_id}, {limit}"


#: A carrier without prefixes is sent nothing: a forced carrier must claim the number too.
_NO_PREFIXES = "none (no job is routed here, even when forced)"


def _status(status: int) -> str:
    name = status_name(status)
    return name if name.startswith("ESME_") else f"0x{status:08x}"


def summary(config: Config) -> str:
    """What the gateway will do with this config, for ``check-config``: no secret values."""
    m = config.mqtt
    lines = [
        f"mqtt: {m.host}:{m.port} client_id={m.client_id} tls={_tls(m.tls)}",
        f"  auth: user={m.username or 'none'} password={_password(m.password)}",
        f"  submit: {m.submit_topic}"
        + (f" (shared as $share/{m.shared_group}/{m.submit_topic})" if m.shared_group else ""),
        f"  status: {m.status_topic}/<id>   inbound: {m.inbound_topic}/<carrier>   "
        f"rejected: {m.rejected_topic}",
        f"  session expiry {_seconds(m.session_expiry)}, keepalive {m.keepalive}s, "
        f"max payload {m.max_payload} bytes, max correlation data {m.max_correlation} bytes",
        "  response topics: "
        + (", ".join(f"{p}/…" for p in m.response_prefixes) or "any outside the gateway's own"),
        _store(config),
        _cluster(config),
        "metrics: "
        + (f"http://{config.metrics.listen}/metrics" if config.metrics.listen else "disabled"),
        f"log: {config.log.level}, {config.log.format.value}",
        f"routing: country code {config.routing.country_code} "
        f"(0912345678 → {config.routing.country_code}912345678), international: "
        + (", ".join(f"+{c}" for c in config.routing.allow_international) or "refused"),
        f"carriers ({len(config.carriers)}):",
    ]
    for c in config.carriers:
        bind = c.bind.value
        lines += [
            f"  {c.name}: {c.host}:{c.port} tls={_tls(c.tls)} system_id={c.system_id} "
            f"password={_password(c.password)}",
            f"    {bind} × {c.sessions} session{'s' if c.sessions != 1 else ''}, "
            f"{c.tps:g} tps, window {c.window}, coding {c.coding}, concat {c.concat} "
            f"(max {c.max_parts} parts)",
            f"    source: {_source(c.source)}",
            f"    prefixes: {' '.join(c.prefixes) if c.prefixes else _NO_PREFIXES}",
        ]
        if c.failover:
            on = ", ".join(_status(s) for s in c.failover_on) or "no status"
            lines.append(
                f"    failover: {' → '.join(c.failover)} (on {on}; down "
                f"{_seconds(c.failover_after)}, high {_seconds(c.failover_after_high)})"
            )
    if config.tenants:
        lines.append(f"tenants ({len(config.tenants)}):")
    for t in config.tenants:
        topic = m.submit_topic if t.name == "default" else f"{m.submit_topic}/{t.name}"
        lines.append(
            f"  {t.name}: {topic}, senders {' '.join(t.senders) if t.senders else 'any'}, "
            f"priorities {' '.join(t.priorities) if t.priorities else 'any'}, "
            f"force_carrier {'yes' if t.force_carrier else 'no'}, "
            f"rate {f'{t.rate:g}/s' if t.rate else 'unlimited'}, "
            f"daily_parts {t.daily_parts or 'unlimited'}, max_queued {t.max_queued or 'unlimited'}"
            + (f", MO numbers {' '.join(t.numbers)}" if t.numbers else "")
            + (f", MO keywords {' '.join(t.keywords)}" if t.keywords else "")
        )
    k = config.consent
    cap = f"{k.marketing_daily_cap} per number per 24 h ({k.cap_action})"
    lines += [
        f"consent: marketing {k.marketing_hours} {k.timezone}, "
        + (cap if k.marketing_daily_cap else "no daily cap")
        + f", label {k.marketing_prefix!r}, footer {k.marketing_footer!r}; events on "
        f"{m.consent_topic}",
        f"  opt-out: {', '.join(k.optout_keywords) or 'none'}"
        + (" (replied)" if k.optout_reply else "")
        + f"; opt-in: {', '.join(k.optin_keywords) or 'none'}"
        + ("; any first MO opts in" if k.mo_is_optin else "")
        + f"; help: {', '.join(k.help_keywords) or 'none'}"
        + (" (replied)" if k.help_reply else " (no reply set)"),
    ]
    table = Router(config.carriers).table()
    lines.append(f"routes ({len(table)}, longest prefix wins):")
    lines += [f"  {prefix:<8} → {name}" for prefix, name in table]
    return "\n".join(lines)
