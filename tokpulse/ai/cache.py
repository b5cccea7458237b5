"""Response caches. Keys are built from the *redacted* request, so a cache never holds
raw PII and two requests that redact to the same text share an answer.

* Chat: Redis, key = sha256(model + parameters + redacted messages), TTL `ai.cache_ttl_seconds`.
  The cached content keeps its placeholders; each call restores them with its own mapping.
* Embeddings: Postgres `ai_embedding_cache`, one float32 vector per (provider, model,
  sha256 of the redacted text), kept for good: the same text is never embedded twice by
  the same model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg2.extras


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def chat_key(model: str, params: dict[str, Any], messages: Sequence[dict[str, Any]]) -> str:
    blob = json.dumps(
        {"m": model, "p": params, "msgs": list(messages)},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


class ChatCache:
    def __init__(self, redis_client, *, prefix: str, ttl_seconds: int):
        self._redis = redis_client
        self._prefix = prefix
        self.ttl = int(ttl_seconds)

    def get(self, key: str) -> dict[str, Any] | None:
        if self.ttl <= 0:
            return None
        raw = self._redis.get(self._prefix + key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.ttl > 0:
            self._redis.set(self._prefix + key, json.dumps(value, ensure_ascii=False), ex=self.ttl)


class EmbeddingCache:
    """Vectors by (provider, model, text hash) in Postgres; `cur` is a workers.db cursor."""

    @staticmethod
    def get_many(
        cur, provider: str, model: str, hashes: Sequence[bytes]
    ) -> dict[bytes, tuple[np.ndarray, int]]:
        if not hashes:
            return {}
        cur.execute(
            "SELECT text_hash, dims, tokens, vector FROM ai_embedding_cache "
            "WHERE provider = %s AND model = %s AND text_hash = ANY(%s)",
            (provider, model, [psycopg2.Binary(h) for h in hashes]),
        )
        out: dict[bytes, tuple[np.ndarray, int]] = {}
        for h, dims, tokens, vec in cur.fetchall():
            arr = np.frombuffer(bytes(vec), dtype="<f4")
            if arr.shape[0] == dims:
                out[bytes(h)] = (arr, int(tokens))
        return out

    @staticmethod
    def put_many(cur, provider: str, model: str, rows: Sequence[tuple[bytes, int, np.ndarray]]) -> None:
        """rows: (text hash, tokens, vector)."""
        if not rows:
            return
        values = []
        for h, tokens, vec in rows:
            v = np.ascontiguousarray(vec, dtype="<f4")
            values.append(
                (
                    provider,
                    model,
                    psycopg2.Binary(h),
                    int(v.shape[0]),
                    int(tokens),
                    psycopg2.Binary(v.tobytes()),
                )
            )
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO ai_embedding_cache (provider, model, text_hash, dims, tokens, vector) VALUES %s "
            "ON CONFLICT (provider, model, text_hash) DO NOTHING",
            values,
            page_size=500,
        )
