"""Embeddings through the gateway against the loopback OpenAI server."""

from __future__ import annotations

import math

import numpy as np
import psycopg2
import pytest

from tests.fakes.openai_server import count_tokens, embed_text
from tests.integration.ai.conftest import ledger_rows, scaled_minute, unique_texts
from tokpulse.ai import DimensionMismatch
from workers import db

MODEL = "text-embedding-3-small"


def test_vectors_in_input_order_and_ledger_equals_server(fake, make_gateway, caller):
    gw = make_gateway(fake)
    texts = unique_texts(30)
    res = gw.embed(texts, caller=caller)
    assert (res.provider, res.model, res.dims) == ("openai", MODEL, 1536)
    assert res.errors == {} and res.cache_hits == 0 and res.requests == 1
    for text, vec in zip(texts, res.vectors, strict=True):
        assert np.allclose(vec, embed_text(MODEL, text, 1536), atol=1e-6)
    server_tokens = fake.total_tokens(status=200, path="/v1/embeddings")
    assert res.input_tokens == server_tokens == sum(count_tokens(t) for t in texts)
    rows = ledger_rows(caller)
    assert [(r["status"], r["cache_hit"], r["inputs"]) for r in rows] == [("ok", False, 30)]
    assert rows[0]["input_tokens"] == server_tokens
    assert float(rows[0]["cost_usd"]) == pytest.approx(server_tokens * 0.02 / 1e6)
    assert rows[0]["request_id"] == fake.last("/v1/embeddings")["request_id"]
    assert rows[0]["latency_ms"] > 0


def test_the_same_text_is_never_embedded_twice(fake, make_gateway, caller):
    gw = make_gateway(fake)
    texts = unique_texts(6)
    first = gw.embed(texts[:4] + texts[:2], caller=caller)  # duplicates inside one call
    assert fake.count(path="/v1/embeddings") == 1 and fake.last("/v1/embeddings")["n_inputs"] == 4
    again = gw.embed(texts, caller=caller)  # 4 cached, 2 new
    assert fake.count(path="/v1/embeddings") == 2 and fake.last("/v1/embeddings")["n_inputs"] == 2
    assert again.cache_hits == 4
    for a, b in zip(first.vectors[:4], again.vectors[:4], strict=True):
        assert np.array_equal(a, b)
    other_gateway = make_gateway(fake)  # another process: same Postgres cache
    cached = other_gateway.embed(texts, caller=caller)
    assert cached.cache_hits == 6 and cached.requests == 0 and fake.count(path="/v1/embeddings") == 2
    rows = ledger_rows(caller)
    hits = [r for r in rows if r["cache_hit"]]
    assert [h["inputs"] for h in hits] == [4, 6]
    assert hits[-1]["cached_tokens"] == sum(count_tokens(t) for t in texts)
    assert all(h["input_tokens"] == 0 and float(h["cost_usd"]) == 0 for h in hits)
    assert sum(r["input_tokens"] for r in rows) == fake.total_tokens(status=200)


def test_oversize_input_is_an_error_for_that_input_only(fake, make_gateway, caller):
    gw = make_gateway(fake)
    texts = unique_texts(3)
    huge = "lorem ipsum dolor " * 3000  # > 8192 tokens
    res = gw.embed([texts[0], huge, "", texts[1]], caller=caller)
    assert set(res.errors) == {1, 2} and "8192" in res.errors[1]
    assert res.vectors[1] is None and res.vectors[2] is None
    assert res.vectors[0] is not None and res.vectors[3] is not None
    assert fake.count(path="/v1/embeddings") == 1 and fake.last("/v1/embeddings")["n_inputs"] == 2


def test_inputs_are_packed_within_the_configured_limits(fake, make_gateway, caller):
    gw = make_gateway(fake, ai={"batch": {"max_inputs": 4}})
    res = gw.embed(unique_texts(10), caller=caller)
    assert res.requests == 3 and fake.count(path="/v1/embeddings", status=200) == 3
    assert max(r["n_inputs"] for r in fake.requests) <= 4

    # Requests never carry more tokens than the per-minute budget; here a "minute" lasts 1 s.
    fake.reset()
    fake.tpm = 120
    with scaled_minute(1.0):
        tight = make_gateway(fake, window=1.0, ai={"rate_limits": {MODEL: {"rpm": 1000, "tpm": 120}}})
        texts = unique_texts(12, words=6)
        assert sum(count_tokens(t) for t in texts) > 120
        res = tight.embed(texts, caller=caller, max_wait=math.inf)
    assert res.errors == {} and res.requests >= 2
    assert all(r["prompt_tokens"] <= 120 for r in fake.requests)
    assert fake.count(status=429) == 0


def test_mixing_dimensions_in_a_namespace_is_refused(fake, make_gateway, caller):
    ns = f"ns-{caller}"
    with db.transaction() as cur:
        cur.execute(
            "INSERT INTO ai_embeddings (namespace, content, content_hash, provider, model, dims, embedding) "
            "VALUES (%s, 'x', 'h1', 'local', 'all-MiniLM-L6-v2', 384, %s)",
            (ns, np.ones(384, dtype=np.float32)),
        )
    gw = make_gateway(fake)
    with pytest.raises(DimensionMismatch) as err:
        gw.embed(unique_texts(2), caller=caller, namespace=ns)
    msg = str(err.value)
    assert "384-dim" in msg and "1536-dim" in msg and ns in msg and "\n" not in msg
    assert fake.count() == 0  # refused before anything was spent
    # the database refuses it too, whoever writes
    with pytest.raises(psycopg2.errors.CheckViolation, match="holds 384-dim vectors"):
        with db.transaction() as cur:
            cur.execute(
                "INSERT INTO ai_embeddings (namespace, content, content_hash, provider, model, dims, "
                "embedding) VALUES (%s, 'y', 'h2', 'openai', %s, 1536, %s)",
                (ns, MODEL, np.ones(1536, dtype=np.float32)),
            )
    ok = gw.embed(unique_texts(2), caller=caller, namespace=f"{ns}-other")
    assert ok.dims == 1536
