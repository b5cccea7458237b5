"""Chat accounting and cache, the no-key fallbacks, and the budget guard."""

from __future__ import annotations

import json

import pytest

from tests.integration.ai.conftest import ledger_rows
from tokpulse.ai import BudgetExceeded, NoProvider
from tokpulse.ai.ledger import month_to_date_spend
from workers import db


def test_chat_usage_cost_and_cache(fake, make_gateway, caller):
    gw = make_gateway(fake)
    msgs = [
        {"role": "system", "content": "Answer in json."},
        {"role": "user", "content": f"{caller} status?"},
    ]
    res = gw.chat(msgs, caller=caller, response_format={"type": "json_object"}, max_tokens=200)
    assert res.source == "openai" and json.loads(res.content)["fake"] is True
    rec = fake.last("/v1/chat/completions")
    assert (res.input_tokens, res.output_tokens) == (rec["prompt_tokens"], rec["completion_tokens"])
    assert res.cost_usd == pytest.approx((res.input_tokens * 0.15 + res.output_tokens * 0.60) / 1e6)
    assert rec["body"]["max_tokens"] == 200 and rec["body"]["response_format"] == {"type": "json_object"}
    hit = gw.chat(msgs, caller=caller, response_format={"type": "json_object"}, max_tokens=200)
    assert hit.cache_hit and hit.content == res.content and fake.count() == 1
    miss = gw.chat(msgs, caller=caller, max_tokens=200)  # other parameters: another request
    assert not miss.cache_hit and fake.count() == 2
    rows = ledger_rows(caller)
    assert [(r["cache_hit"], r["operation"]) for r in rows] == [
        (False, "chat"),
        (True, "chat"),
        (False, "chat"),
    ]
    assert sum(r["input_tokens"] + r["output_tokens"] for r in rows) == fake.total_tokens(status=200)
    assert rows[1]["cached_tokens"] == res.input_tokens + res.output_tokens


def test_without_a_key_chat_uses_the_callers_analyzer(fake, make_gateway, caller):
    gw = make_gateway(fake, key=False)

    def deploy_rules(messages):
        return "risk_score: 2 (rule-based)"

    res = gw.chat([{"role": "user", "content": "analyse"}], caller=caller, analyzer=deploy_rules)
    assert res.source == "deterministic-analyzer" and res.content == "risk_score: 2 (rule-based)"
    assert res.cost_usd == 0 and fake.count() == 0
    row = ledger_rows(caller)[0]
    assert row["provider"] == "deterministic-analyzer" and "deploy_rules" in row["model"]
    with pytest.raises(NoProvider, match="OPENAI_API_KEY"):
        gw.chat([{"role": "user", "content": "analyse"}], caller=caller)


def test_budget_guard_refuses_non_essential_calls_past_the_budget(fake, make_gateway, caller):
    with db.transaction() as cur:
        spent = month_to_date_spend(cur)
    gw = make_gateway(fake, budget=spent + 1e-7)  # the first real call crosses it
    gw.chat([{"role": "user", "content": f"{caller} one"}], caller=caller)
    with pytest.raises(BudgetExceeded) as err:
        gw.chat([{"role": "user", "content": f"{caller} two"}], caller=caller)
    msg = str(err.value)
    assert "MONTHLY_BUDGET" in msg and caller in msg and "\n" not in msg
    assert fake.count() == 1
    # essential work continues; cache hits and free providers are never refused
    gw.chat([{"role": "user", "content": f"{caller} three"}], caller=caller, essential=True)
    assert gw.chat([{"role": "user", "content": f"{caller} one"}], caller=caller).cache_hit
    assert fake.count() == 2
    statuses = [r["status"] for r in ledger_rows(caller)]
    assert statuses == ["ok", "refused", "ok", "ok"]
    with db.transaction() as cur:
        cur.execute(
            "SELECT kind, channel, payload FROM alerts_outbox WHERE dedup_key LIKE 'ai_budget_exceeded:%'"
        )
        events = cur.fetchall()
    assert len(events) == 1 and events[0][0] == "budget_exceeded" and events[0][2]["budget_usd"] > 0


@pytest.fixture(autouse=True)
def _no_budget_event_left_behind():
    yield  # the outbox belongs to the alerting pool's tests too
    with db.transaction() as cur:
        cur.execute("DELETE FROM alerts_outbox WHERE dedup_key LIKE 'ai_budget_exceeded:%'")
