"""The real path: every embedding through the AI gateway, here against the loopback OpenAI."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.embeddings.conftest import rows
from tokpulse.embeddings.embedder import GatewayEmbedder
from tokpulse.embeddings.pipeline import ingest
from tokpulse.embeddings.search import SearchRequest, search
from workers import db, names


@pytest.fixture
def gateway_env(fake_openai_env):
    from tokpulse.ai import reset_gateway

    reset_gateway()
    yield fake_openai_env
    reset_gateway()


def _ledger_cost(caller: str, since_id: int) -> tuple[float, int]:
    with db.transaction() as cur:
        cur.execute("SELECT coalesce(sum(cost_usd), 0), coalesce(sum(input_tokens), 0) FROM ai_usage_metrics "
                    "WHERE task_name = %s AND id > %s", (caller, since_id))
        cost, tokens = cur.fetchone()
    return float(cost), int(tokens)


def _last_ledger_id() -> int:
    with db.transaction() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM ai_usage_metrics")
        return int(cur.fetchone()[0])


def test_ingest_and_search_through_the_gateway(gateway_env, namespace):
    fake = gateway_env
    tag = uuid.uuid4().hex
    docs = [{"text": f"# Deploy {tag}\n\nDeploy to production with the release pipeline. Ask john@example.com.",
             "source": "deploy.md"},
            {"text": f"# Queues {tag}\n\nEach worker pool consumes one Redis queue.", "source": "queues.md"}]
    since = _last_ledger_id()
    emb = GatewayEmbedder(caller=names.EMBED_DOCUMENTS)
    res = ingest(namespace, documents=docs, embedder=emb)
    assert (res.total, res.processed, res.failed) == (2, 2, 0)
    assert fake.count(path="/v1/embeddings", status=200) == 1, "both documents travelled in one request"
    sent = fake.last("/v1/embeddings")
    assert sent["n_inputs"] == 2
    billed = fake.total_tokens(status=200, path="/v1/embeddings")
    assert res.cost_usd == pytest.approx(billed * 0.02 / 1e6)
    ledger_cost, ledger_tokens = _ledger_cost(names.EMBED_DOCUMENTS, since)
    assert ledger_tokens == billed and res.cost_usd == pytest.approx(ledger_cost)
    stored = rows(namespace)
    assert {(r["provider"], r["model"], r["dims"]) for r in stored} == {("openai", "text-embedding-3-small", 1536)}
    deploy = [r for r in stored if r["source"] == "deploy.md"][0]
    assert "john@example.com" not in deploy["content"] and "[EMAIL_REDACTED]" in deploy["content"]

    again = ingest(namespace, documents=docs, embedder=emb)
    assert again.skipped == 2 and again.cost_usd == 0
    assert fake.count(path="/v1/embeddings") == 1, "unchanged chunks reached the provider"

    resp = search(SearchRequest(f"release pipeline production {tag}", namespace, limit=2),
                  embedder=GatewayEmbedder(caller=names.SEARCH))
    assert resp.model == "openai/text-embedding-3-small" and resp.results[0].source == "deploy.md"
    assert fake.count(path="/v1/embeddings") == 2, "the query is embedded once"


def test_dry_run_estimates_with_the_configured_price(gateway_env, namespace):
    fake = gateway_env
    from tokpulse.ai.tokens import count_tokens

    text = f"# Estimate {uuid.uuid4().hex}\n\nHow much would this cost to embed?"
    res = ingest(namespace, documents=[text], embedder=GatewayEmbedder(caller=names.EMBED_DOCUMENTS), dry_run=True)
    assert fake.count(path="/v1/embeddings") == 0
    assert res.estimated_tokens == count_tokens(text)
    assert res.cost_usd == pytest.approx(res.estimated_tokens * 0.02 / 1e6)
    assert res.model == "openai/text-embedding-3-small"
