"""`tokpulse usage` reads the ledger per provider and model."""

from __future__ import annotations

import json
import uuid

import pytest

from tokpulse.ai.ledger import LedgerRow, write_rows
from tokpulse.cli import main
from workers import db


@pytest.fixture
def model():
    name = f"test-model-{uuid.uuid4().hex[:8]}"
    yield name
    with db.transaction() as cur:  # these dollars are made up: keep them out of later budgets
        cur.execute("DELETE FROM ai_usage_metrics WHERE model = %s", (name,))


def test_usage_json_aggregates_per_provider_and_model(capsys, model):
    base = dict(caller="test.usage", provider="openai", model=model, operation="chat")
    write_rows(
        [
            LedgerRow(**base, input_tokens=100, output_tokens=20, cost_usd=0.5, latency_ms=10),
            LedgerRow(**base, input_tokens=50, output_tokens=5, cost_usd=0.25, latency_ms=30),
            LedgerRow(**base, cache_hit=True, cached_tokens=120),
            LedgerRow(**base, status="rate_limited", rate_limited=True),
            LedgerRow(**base, status="error", error="HTTP 500"),
            LedgerRow(**base, status="refused", error="budget"),
        ]
    )
    assert main(["usage", "--json", "--since", "1h"]) == 0
    rows = json.loads(capsys.readouterr().out)
    mine = [r for r in rows if r["model"] == model]
    assert len(mine) == 1
    r = mine[0]
    assert (r["provider"], r["calls"], r["input_tokens"], r["output_tokens"]) == ("openai", 6, 150, 25)
    counts = (r["cache_hits"], r["cached_tokens"], r["rate_limited"], r["errors"], r["refused"])
    assert counts == (1, 120, 1, 1, 1)
    assert abs(r["cost_usd"] - 0.75) < 1e-9 and r["latency_ms_p50"] == 20.0

    assert main(["usage"]) == 0  # human table, this month
    out = capsys.readouterr().out
    assert model in out and "month-to-date spend" in out

    assert main(["usage", "--json", "--since", "2999-01-01"]) == 0
    assert [r for r in json.loads(capsys.readouterr().out) if r["model"] == model] == []


def test_usage_rejects_a_bad_since(capsys):
    assert main(["usage", "--since", "yesterday-ish"]) == 2
    err = capsys.readouterr().err
    assert "--since" in err and len(err.strip().splitlines()) == 1
