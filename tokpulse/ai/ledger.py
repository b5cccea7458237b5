"""Usage ledger: one `ai_usage_metrics` row per provider request (each attempt, whatever
its outcome), per cache-served call and per budget refusal. The AI-performance watcher,
the cost forecaster, the budget guard and `tokpulse usage` read it.

Tokens are the provider's `usage` when it reports one (else the offline count, noted in
`error`); a cache hit bills nothing and records the tokens it saved in `cached_tokens`.
A write that fails is logged, not raised: the provider already did (and billed) the work,
and failing the caller would make it pay again on retry."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from datetime import datetime

log = logging.getLogger(__name__)


@dataclass
class LedgerRow:
    caller: str
    provider: str
    model: str
    operation: str  # 'chat' | 'embedding'
    status: str = "ok"  # ok | error | rate_limited | refused
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float | None = None
    cache_hit: bool = False
    rate_limited: bool = False
    request_id: str | None = None
    error: str | None = None
    inputs: int = 1
    cached_tokens: int = 0
    requested_tokens: int | None = None
    attempt: int = 1
    essential: bool | None = None


_COLUMNS = (
    "task_name",
    "provider",
    "model",
    "operation",
    "status",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "cache_hit",
    "rate_limited",
    "request_id",
    "error",
    "inputs",
    "cached_tokens",
    "requested_tokens",
    "attempt",
    "essential",
)
assert len(_COLUMNS) == len(fields(LedgerRow))


_INSERT = f"INSERT INTO ai_usage_metrics ({', '.join(_COLUMNS)}) VALUES ".encode()
_ROW = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
# Metrics rows: losing the last few milliseconds of them in a server crash is acceptable,
# waiting for the WAL flush on every call is not (a cache hit must stay around a millisecond).
_ASYNC = b"SET LOCAL synchronous_commit TO OFF; "


def _sql(cur, rows: Sequence[LedgerRow]) -> bytes:
    values = []
    for r in rows:
        t = list(astuple(r))
        t[12] = (r.error or None) and r.error[:1000]
        values.append(cur.mogrify(_ROW, tuple(t)))
    return _INSERT + b", ".join(values)


def write_rows(rows: Sequence[LedgerRow], cur=None, *, async_commit: bool = False) -> None:
    """Insert the rows: in `cur`'s transaction when given (`async_commit` then relaxes that
    transaction's commit), else in a new transaction of their own, in one round trip."""
    if not rows:
        return
    if cur is not None:
        cur.execute((_ASYNC if async_commit else b"") + _sql(cur, rows))
        return
    from workers import db

    try:
        with db.transaction() as c:
            c.execute(_ASYNC + _sql(c, rows))
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        log.error(
            "ai ledger: could not record %d row(s) (%s/%s): %s: %s",
            len(rows),
            rows[0].provider,
            rows[0].model,
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
        )


def month_to_date_spend(cur) -> float:
    """USD recorded since the start of the current month (UTC)."""
    cur.execute(
        "SELECT COALESCE(SUM(cost_usd), 0) FROM ai_usage_metrics "
        "WHERE created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    )
    return float(cur.fetchone()[0])


def usage_summary(cur, since: datetime | None) -> list[dict]:
    """Per provider and model since `since` (None: everything)."""
    cur.execute(
        """
        SELECT provider, model,
               count(*)                                          AS calls,
               COALESCE(sum(input_tokens), 0)                    AS input_tokens,
               COALESCE(sum(output_tokens), 0)                   AS output_tokens,
               COALESCE(sum(cost_usd), 0)                        AS cost_usd,
               count(*) FILTER (WHERE cache_hit)                 AS cache_hits,
               COALESCE(sum(cached_tokens), 0)                   AS cached_tokens,
               count(*) FILTER (WHERE rate_limited)              AS rate_limited,
               count(*) FILTER (WHERE status = 'error')          AS errors,
               count(*) FILTER (WHERE status = 'refused')        AS refused,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)
                   FILTER (WHERE NOT cache_hit AND status = 'ok') AS latency_ms_p50,
               min(created_at) AS first_at, max(created_at) AS last_at
          FROM ai_usage_metrics
         WHERE %(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz
         GROUP BY provider, model
         ORDER BY cost_usd DESC, calls DESC, provider, model
        """,
        {"since": since},
    )
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        item = dict(zip(names, row, strict=True))
        for k in (
            "calls",
            "input_tokens",
            "output_tokens",
            "cache_hits",
            "cached_tokens",
            "rate_limited",
            "errors",
            "refused",
        ):
            item[k] = int(item[k])
        item["cost_usd"] = round(float(item["cost_usd"]), 8)
        p50 = item["latency_ms_p50"]
        item["latency_ms_p50"] = None if p50 is None else round(float(p50), 1)
        for k in ("first_at", "last_at"):
            item[k] = item[k].isoformat() if item[k] is not None else None
        out.append(item)
    return out
