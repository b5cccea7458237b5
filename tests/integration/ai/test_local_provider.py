"""No API key: embeddings come from the bundled all-MiniLM-L6-v2, offline, on CPU."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.ai.conftest import ledger_rows, unique_texts
from tokpulse.ai import DimensionMismatch, NoProvider
from workers import db

pytest.importorskip("sentence_transformers")


def test_local_embeddings_without_a_key(fake, make_gateway, caller):
    gw = make_gateway(fake, key=False)
    tag = caller.rsplit(".", 1)[-1]
    texts = [
        f"{tag} the deploy to production failed with a timeout",
        f"{tag} production deployment failed because it timed out",
        f"{tag} my favourite recipe is a lemon cake",
        "reach me at someone@example.com",
    ]
    res = gw.embed(texts, caller=caller)
    assert (res.provider, res.model, res.dims) == ("local", "all-MiniLM-L6-v2", 384)
    assert res.cost_usd == 0 and fake.count() == 0
    v = np.stack(res.vectors)
    assert v.shape == (4, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2  # related texts are closer
    rows = ledger_rows(caller)
    assert rows[0]["provider"] == "local" and rows[0]["input_tokens"] > 0 and float(rows[0]["cost_usd"]) == 0
    assert gw.embed(texts, caller=caller).cache_hits == 4

    ns = f"ns-local-{tag}"
    with db.transaction() as cur:
        cur.execute(
            "INSERT INTO ai_embeddings (namespace, content, content_hash, provider, model, dims, embedding) "
            "VALUES (%s, 'x', 'h', 'openai', 'text-embedding-3-small', 1536, %s)",
            (ns, np.ones(1536, dtype=np.float32)),
        )
    with pytest.raises(DimensionMismatch, match="1536-dim"):
        gw.embed(unique_texts(1), caller=caller, namespace=ns)
    with pytest.raises(NoProvider, match="OPENAI_API_KEY"):
        gw.embed(["x"], caller=caller, model="text-embedding-3-large")
