"""Offline token counts: cl100k_base from `bpe-openai` (tiktoken would download its
vocabulary at first use and fails offline).

The counts are estimates for the rate limiter and the batcher; the provider's `usage`
is what the ledger records when it reports one. Chat counts follow OpenAI's cookbook
rule (3 per message + role + content [+ name + 1], plus 3 priming the reply)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from typing import Any

_lock = threading.Lock()
_encoding: Any = None
# bpe_openai refuses a single chunk above its token limit; long texts are cut before a
# space (where cl100k tokens start), so the sum equals the count of the whole text.
_CHUNK_CHARS = 40_000
IMAGE_PART_TOKENS = 85  # non-text content parts: the flat low-detail cost


def _enc() -> Any:
    global _encoding
    if _encoding is None:
        with _lock:
            if _encoding is None:
                import bpe_openai

                _encoding = bpe_openai.get_encoding("cl100k_base")
    return _encoding


def _chunks(text: str) -> Iterable[str]:
    start = 0
    while start < len(text):
        end = min(len(text), start + _CHUNK_CHARS)
        if end < len(text):
            cut = text.rfind(" ", start + _CHUNK_CHARS // 2, end)
            if cut > start:
                end = cut
        yield text[start:end]
        start = end


def count_tokens(text: str) -> int:
    """cl100k_base tokens of `text` (special-token text counts as ordinary text)."""
    if not text:
        return 0
    enc = _enc()
    if len(text) <= _CHUNK_CHARS:
        return len(enc.encode_ordinary(text))
    return sum(len(enc.encode_ordinary(c)) for c in _chunks(text))


def count_many(texts: Sequence[str]) -> list[int]:
    """`count_tokens` of each text (threaded for large batches)."""
    enc = _enc()
    short = [i for i, t in enumerate(texts) if t and len(t) <= _CHUNK_CHARS]
    out = [0] * len(texts)
    if len(short) > 64:
        for i, toks in zip(short, enc.encode_ordinary_batch([texts[i] for i in short]), strict=True):
            out[i] = len(toks)
    else:
        for i in short:
            out[i] = len(enc.encode_ordinary(texts[i]))
    for i, t in enumerate(texts):
        if t and len(t) > _CHUNK_CHARS:
            out[i] = count_tokens(t)
    return out


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text"):
                total += count_tokens(str(part.get("text") or ""))
            elif isinstance(part, str):
                total += count_tokens(part)
            else:
                total += IMAGE_PART_TOKENS
        return total
    return count_tokens(json.dumps(content))


def count_chat_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Prompt tokens of a chat request, by the cookbook rule."""
    total = 3
    for m in messages:
        total += 3 + count_tokens(str(m.get("role") or "")) + _content_tokens(m.get("content"))
        if m.get("name"):
            total += count_tokens(str(m["name"])) + 1
        if m.get("tool_calls"):
            total += count_tokens(json.dumps(m["tool_calls"]))
    return total
