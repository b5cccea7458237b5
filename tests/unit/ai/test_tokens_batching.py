"""Offline token counts and embedding request packing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.openai_server import count_chat_tokens as fake_chat_tokens
from tests.fakes.openai_server import count_tokens as fake_tokens
from tokpulse.ai.batching import BatchLimits, lower_bound, pack
from tokpulse.ai.tokens import count_chat_tokens, count_many, count_tokens

TEXTS = [
    "",
    "hello world",
    "Deploy failed on staging: ECONNRESET after 30s <|endoftext|>",
    "naïve café — 東京 🚀 " * 7,
    "x" * 1000,
    ("word " * 30_000).strip(),  # over the 40k-character chunk: counted in pieces
]


@pytest.mark.parametrize("text", TEXTS)
def test_counts_match_the_server_rule(text):
    assert count_tokens(text) == fake_tokens(text)


def test_count_many_equals_one_by_one():
    texts = [f"text number {i} " * (i % 17 + 1) for i in range(200)] + TEXTS
    assert count_many(texts) == [count_tokens(t) for t in texts]


def test_chat_count_matches_the_server_rule():
    messages = [
        {"role": "system", "content": "You analyse deploy logs and answer in JSON."},
        {"role": "user", "name": "ops", "content": "Why did the deploy fail?"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "see attached"}, {"type": "image_url", "image_url": {}}],
        },
    ]
    assert count_chat_tokens(messages) == fake_chat_tokens(messages)


def _check(counts: list[int], limits: BatchLimits):
    p = pack(counts, limits)
    seen = sorted(i for b in p.batches for i in b)
    assert sorted(seen + list(p.oversize)) == list(range(len(counts)))
    for b in p.batches:
        assert 1 <= len(b) <= limits.max_inputs
        assert sum(counts[i] for i in b) <= limits.max_request_tokens
    for i in p.oversize:
        assert counts[i] <= 0 or counts[i] > min(limits.max_input_tokens, limits.max_request_tokens)
    return p


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=9000), max_size=400),
    st.integers(min_value=1, max_value=64),
    st.integers(min_value=8192, max_value=40_000),
)
def test_packing_respects_every_limit(counts, max_inputs, max_tokens):
    limits = BatchLimits(max_inputs=max_inputs, max_request_tokens=max_tokens, max_input_tokens=8192)
    p = _check(counts, limits)
    ok = [c for i, c in enumerate(counts) if i not in p.oversize]
    assert len(p.batches) <= math.ceil(1.05 * lower_bound(ok, limits)) + 1


@pytest.mark.parametrize("spread", [(1, 200), (20, 300), (100, 8000)])
def test_packing_reaches_the_lower_bound_on_real_sizes(spread):
    import random

    rnd = random.Random(7)
    counts = [rnd.randint(*spread) for _ in range(30_000)]
    limits = BatchLimits()
    p = _check(counts, limits)
    assert len(p.batches) <= 1.05 * lower_bound(counts, limits)


def test_oversize_and_empty_inputs_are_per_input_errors():
    p = pack([10, 9000, 0, 20], BatchLimits())
    assert set(p.oversize) == {1, 2}
    assert "9000 tokens" in p.oversize[1] and "8192" in p.oversize[1]
    assert "empty" in p.oversize[2]
    assert p.batches == [[0, 3]]


def test_requests_never_exceed_the_per_minute_budget():
    p = pack([3000] * 10, BatchLimits(max_request_tokens=7000))
    assert all(len(b) <= 2 for b in p.batches) and len(p.batches) == 5
    p = pack([8000], BatchLimits(max_request_tokens=7000))
    assert "per-minute budget" in p.oversize[0]
