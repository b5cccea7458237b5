"""Fixtures for the embeddings pipeline/search tests: a deterministic 384-dim embedder
that counts its calls (the pipeline's `Embedder` seat; the gateway itself is exercised
with the loopback OpenAI in test_gateway_path.py), unique namespaces, and a clean
staging queue."""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from collections.abc import Sequence

import numpy as np
import pytest

from tokpulse.embeddings.embedder import EmbedBatch

_WORD = re.compile(r"\w+")


def hash_vector(text: str, dims: int = 384) -> np.ndarray:
    """Bag of words hashed into `dims` (texts sharing words are close)."""
    v = np.zeros(dims, dtype=np.float32)
    for w in _WORD.findall(text.lower()):
        h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        v[h % dims] += 1.0 if (h >> 40) & 1 else -1.0
    n = float(np.linalg.norm(v))
    if n == 0:
        v[0] = 1.0
        return v
    return v / n


class FakeEmbedder:
    """Embedder protocol: records every call; `fail` maps a substring to a per-input error;
    `explode` raises on the next call (a crash mid-batch)."""

    def __init__(self, dims: int = 384, target: str | None = None, price_per_token: float = 1e-6):
        self.dims = dims
        self.target = target or f"test/hash-{dims}-{uuid.uuid4().hex[:6]}"
        self.calls: list[list[str]] = []
        self.fail: dict[str, str] = {}
        self.explode: BaseException | None = None
        self.price = price_per_token
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> EmbedBatch:
        with self._lock:
            self.calls.append(list(texts))
        if self.explode is not None:
            exc, self.explode = self.explode, None
            raise exc
        vectors: list[np.ndarray | None] = []
        errors: dict[int, str] = {}
        for i, t in enumerate(texts):
            bad = next((msg for key, msg in self.fail.items() if key in t), None)
            if bad:
                errors[i] = bad
                vectors.append(None)
            else:
                vectors.append(hash_vector(t, self.dims))
        tokens = sum(len(t.split()) for t in texts)
        return EmbedBatch(vectors, errors, "test", self.target.split("/", 1)[1], self.dims, tokens * self.price,
                          tokens)

    def estimate_cost(self, tokens: int) -> float:
        return tokens * self.price

    @property
    def embedded(self) -> int:
        return sum(len(c) for c in self.calls)


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _clean_staging():
    """Pending rows left by another test would be drained (and counted) by this one."""
    from workers import db

    with db.transaction() as cur:
        cur.execute("DELETE FROM ai_embedding_queue")
    yield


def rows(namespace: str) -> list[dict]:
    from workers import db

    with db.transaction(dict_rows=True) as cur:
        cur.execute("SELECT id, content, content_hash, source, metadata, provider, model, dims FROM ai_embeddings "
                    "WHERE namespace = %s ORDER BY id", (namespace,))
        return [dict(r) for r in cur.fetchall()]
