"""The `ai` section of agent_config.json, prices, `--since` parsing, error scrubbing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tokpulse.ai.prices import cost_usd
from tokpulse.ai.providers import parse_retry_after, scrub
from tokpulse.ai.usage_cli import parse_since
from tokpulse.settings import DEFAULT_CONFIG_PATH, AgentConfig, ConfigError, load_agent_config


def _load(tmp_path: Path, data: dict) -> AgentConfig:
    p = tmp_path / "agent_config.json"
    p.write_text(json.dumps(data))
    return load_agent_config(p)


def test_absent_section_means_defaults(tmp_path):
    cfg = _load(tmp_path, {"models": {"reasoning": "gpt-4o-mini"}})
    ai = cfg.ai
    assert ai.prices["text-embedding-3-small"].input == 0.02
    assert ai.prices["text-embedding-3-large"].input == 0.13
    assert ai.prices["gpt-4o-mini"].output == 0.60
    assert ai.rate_limits["text-embedding-3-small"].tpm == 1_000_000
    assert ai.batch.max_inputs == 2048 and ai.batch.max_request_tokens == 300_000
    assert ai.batch.max_input_tokens == 8192
    assert ai.max_wait_seconds == 5.0 and ai.retry.max_attempts == 5
    assert load_agent_config(DEFAULT_CONFIG_PATH).ai == ai


def test_entries_merge_over_the_defaults(tmp_path):
    cfg = _load(
        tmp_path,
        {
            "ai": {
                "prices": {"my-model": {"input": 1, "output": 2}},
                "rate_limits": {"gpt-4o-mini": {"rpm": 10, "tpm": 1000}},
                "max_wait_seconds": 3,
            }
        },
    )
    assert cfg.ai.prices["my-model"].input == 1.0 and cfg.ai.prices["text-embedding-3-small"].input == 0.02
    assert cfg.ai.rate_limits["gpt-4o-mini"].rpm == 10 and "gpt-4o" in cfg.ai.rate_limits
    assert cfg.ai.max_wait_seconds == 3.0


@pytest.mark.parametrize(
    "ai, where",
    [
        ({"prices": {"m": {"input": -1}}}, "ai.prices.m.input"),
        ({"rate_limits": {"m": {"rpm": 5}}}, "ai.rate_limits.m.tpm"),
        ({"batch": {"max_inputs": 4096}}, "ai.batch.max_inputs"),
        ({"retry": {"max_attempts": "3"}}, "ai.retry.max_attempts"),
        ({"cache_ttl": 5}, "ai.cache_ttl"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, ai, where):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, {"ai": ai})
    assert where in str(err.value) and "\n" not in str(err.value)


def test_cost_from_the_price_table():
    prices = AgentConfig().ai.prices
    assert cost_usd("openai", "text-embedding-3-small", 1_000_000, 0, prices) == pytest.approx(0.02)
    assert cost_usd("openai", "text-embedding-3-large", 500_000, 0, prices) == pytest.approx(0.065)
    assert cost_usd("openai", "gpt-4o-mini", 1000, 1000, prices) == pytest.approx(0.00075)
    assert cost_usd("local", "all-MiniLM-L6-v2", 10**6, 0, prices) == 0
    assert cost_usd("openai", "unpriced-model", 10**6, 0, prices) == 0


def test_parse_since():
    now = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2025-01-31", now) == datetime(2025, 1, 31, tzinfo=UTC)
    assert parse_since("2025-01-31T10:00:00Z", now) == datetime(2025, 1, 31, 10, tzinfo=UTC)
    assert parse_since(None, now) == datetime(2025, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a relative age"):
        parse_since("last tuesday", now)


def test_scrub_and_retry_after():
    key = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    msg = scrub(f"Incorrect API key provided: {key} (sk-...Xy4z)", key)
    assert key not in msg and "Xy4z" not in msg
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({}) is None


def test_only_the_provider_module_imports_openai():
    import re

    root = Path(__file__).resolve().parents[3]
    offenders = []
    files = [
        *root.glob("tokpulse/**/*.py"),
        *root.glob("workers/**/*.py"),
        *root.glob("tasks/**/*.py"),
        *root.glob("*.py"),
    ]
    for path in files:
        if path.relative_to(root).as_posix() == "tokpulse/ai/providers.py":
            continue
        if re.search(r"^\s*(import openai|from openai\b)", path.read_text(encoding="utf-8"), re.MULTILINE):
            offenders.append(str(path.relative_to(root)))
    assert offenders == []
