"""Fixtures for the AI gateway tests: a loopback OpenAI, a gateway wired to it with its own
Redis key prefix (no test sees another's buckets or cache), and ledger helpers."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import openai_server
from tests.fakes.openai_server import FakeOpenAI


@contextlib.contextmanager
def scaled_minute(window_seconds: float) -> Iterator[None]:
    """Make the fake's per-minute buckets refill per `window_seconds` (tests and the bench run
    a scaled-down minute; the gateway gets the same `window_seconds`)."""
    original = openai_server._Bucket.rate
    openai_server._Bucket.rate = property(lambda self: self.capacity / window_seconds)
    try:
        yield
    finally:
        openai_server._Bucket.rate = original


def write_settings(
    tmp: Path,
    *,
    api_key: str | None,
    base_url: str | None,
    ai: dict | None = None,
    budget: float | None = None,
):
    from tokpulse.settings import load_settings

    cfg = {"project_ref": "test", "ai": ai or {}}
    path = tmp / f"agent_config_{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(cfg))
    env = {
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "TOKPULSE_AGENT_CONFIG": str(path),
        "TOKPULSE_HOME": str(tmp / "home"),
    }
    if api_key:
        env["OPENAI_API_KEY"] = api_key
    if base_url:
        env["OPENAI_BASE_URL"] = base_url
    if budget is not None:
        env["MONTHLY_BUDGET"] = repr(budget)
    return load_settings(environ=env, cwd=tmp)


FAST_RETRY = {
    "max_attempts": 4,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.05,
    "timeout_seconds": 5,
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as f:
        yield f


@pytest.fixture
def make_gateway(tmp_path, redis_client):
    """make_gateway(fake, ai={...}, budget=..., window=60.0, key=True) -> Gateway."""
    from tokpulse.ai.client import Gateway

    prefixes: list[str] = []

    def _make(
        fake: FakeOpenAI | None,
        *,
        ai: dict | None = None,
        budget: float | None = None,
        window: float = 60.0,
        key: bool = True,
        **kwargs,
    ):
        ai = {"retry": dict(FAST_RETRY), **(ai or {})}
        settings = write_settings(
            tmp_path,
            api_key=fake.api_key if (fake and key) else None,
            base_url=fake.base_url if fake else None,
            ai=ai,
            budget=budget,
        )
        prefix = f"tokpulse:test:{uuid.uuid4().hex[:10]}:"
        prefixes.append(prefix)
        return Gateway(
            settings, redis_client=redis_client, key_prefix=prefix, window_seconds=window, **kwargs
        )

    yield _make
    for prefix in prefixes:
        keys = list(redis_client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            redis_client.delete(*keys)


@pytest.fixture
def caller() -> str:
    return f"test.ai.{uuid.uuid4().hex[:12]}"


def ledger_rows(caller: str) -> list[dict]:
    from workers import db

    with db.transaction(dict_rows=True) as cur:
        cur.execute("SELECT * FROM ai_usage_metrics WHERE task_name = %s ORDER BY id", (caller,))
        return [dict(r) for r in cur.fetchall()]


def unique_texts(n: int, words: int = 8, tag: str | None = None) -> list[str]:
    """Texts no other test embeds (the embedding cache is shared by the whole database)."""
    tag = tag or uuid.uuid4().hex[:8]
    vocab = ["alpha", "queue", "redis", "worker", "vector", "budget", "latency", "deploy", "token", "model"]
    return [
        f"{tag}-{i} " + " ".join(vocab[(i * 7 + k * 3) % len(vocab)] for k in range(words)) for i in range(n)
    ]
