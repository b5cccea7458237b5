"""The search API loads what its first query would wait for, without a provider call."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tokpulse.api import server


@pytest.mark.parametrize(("provider", "loads"), [("local", 1), ("openai", 0)])
def test_warm_up_loads_the_offline_model_only_when_it_serves_queries(monkeypatch, provider, loads):
    import tokpulse.ai.providers as providers

    calls = []
    monkeypatch.setattr(providers, "_load_local_model", lambda: calls.append(1))
    embedder = SimpleNamespace(provider=provider, embed=lambda *a, **k: pytest.fail("no provider call"))
    server._warm_up(embedder)
    assert len(calls) == loads


def test_a_failing_warm_up_is_logged_not_raised(monkeypatch, caplog):
    import tokpulse.ai.providers as providers

    def broken():
        raise OSError("model files missing")

    monkeypatch.setattr(providers, "_load_local_model", broken)
    server._warm_up(SimpleNamespace(provider="local"))
    assert "warm-up failed: OSError" in caplog.text
