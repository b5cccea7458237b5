"""`tokpulse usage [--since 7d|24h|ISO] [--json]`: the AI usage ledger per provider and model.

`--json` prints a list of rows with provider, model, calls, input_tokens, output_tokens,
cost_usd, cache_hits, cached_tokens, rate_limited, errors, refused, latency_ms_p50,
first_at, last_at. `calls` counts ledger rows: every provider attempt, every call answered
from the cache and every budget refusal; `rate_limited` counts 429s, `errors` other failures.
Without `--since`, the current month (UTC), as the budget counts it."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta

from tokpulse.settings import ConfigError, Settings

_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None, now: datetime | None = None) -> datetime:
    """'7d', '24h', '30m', '2w', '90s', or an ISO date/datetime (naive = UTC). None: month start."""
    now = now or datetime.now(UTC)
    if value is None:
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    m = _REL.match(value)
    if m:
        return now - timedelta(**{_UNIT[m.group(2).lower()]: float(m.group(1))})
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since: {value!r} is neither a relative age (7d, 24h, 30m, 2w) nor an ISO date "
            "(2025-01-31 or 2025-01-31T12:00:00Z)"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _table(rows: list[dict], since: datetime, spent: float | None, budget: float) -> str:
    head = (
        "provider",
        "model",
        "calls",
        "input_tok",
        "output_tok",
        "cost_usd",
        "cache_hits",
        "429s",
        "errors",
    )
    body = [
        (
            r["provider"],
            r["model"],
            str(r["calls"]),
            f"{r['input_tokens']:,}",
            f"{r['output_tokens']:,}",
            f"{r['cost_usd']:.4f}",
            str(r["cache_hits"]),
            str(r["rate_limited"]),
            str(r["errors"]),
        )
        for r in rows
    ]
    if rows:
        body.append(
            (
                "total",
                "",
                str(sum(r["calls"] for r in rows)),
                f"{sum(r['input_tokens'] for r in rows):,}",
                f"{sum(r['output_tokens'] for r in rows):,}",
                f"{sum(r['cost_usd'] for r in rows):.4f}",
                str(sum(r["cache_hits"] for r in rows)),
                str(sum(r["rate_limited"] for r in rows)),
                str(sum(r["errors"] for r in rows)),
            )
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = [f"AI usage since {since.isoformat(timespec='seconds')}"]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    lines.append(fmt.format(*head))
    lines.extend(fmt.format(*b) for b in body)
    if not rows:
        lines.append("(no AI calls recorded)")
    if spent is not None:
        lines.append(f"month-to-date spend ${spent:.2f} of ${budget:.2f} budget (MONTHLY_BUDGET)")
    return "\n".join(lines)


def cmd_usage(args: argparse.Namespace, settings: Settings) -> int:
    try:
        since = parse_since(getattr(args, "since", None))
    except ValueError as exc:
        print(f"tokpulse usage: {exc}", file=sys.stderr)
        return 2
    if not os.environ.get("DATABASE_URL"):
        from tokpulse.embedded import resolve_urls

        urls, _ = resolve_urls(settings, start=False)
        if urls is None:
            raise ConfigError(
                "DATABASE_URL",
                f"not set and no embedded services are running under {settings.home} "
                "(run `tokpulse up` or `tokpulse services`, or set DATABASE_URL)",
            )
        os.environ["DATABASE_URL"] = urls.database_url
    from tokpulse.ai.ledger import month_to_date_spend, usage_summary
    from workers import db

    try:
        with db.transaction() as cur:
            rows = usage_summary(cur, since)
            spent = month_to_date_spend(cur)
    except Exception as exc:  # noqa: BLE001 - one line for the operator
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"tokpulse usage: cannot read the ledger: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows, since, spent, settings.monthly_budget))
    return 0
