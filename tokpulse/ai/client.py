"""The gateway: the one path every chat completion and embedding takes.

Order for every call: privacy guard (reversible for chat) -> cache -> budget guard ->
global rate limiter (Redis) -> provider, with bounded retries -> reconcile the limiter
with `usage` -> ledger row -> cache fill -> placeholders restored. No provider is reached
any other way."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from tokpulse.ai.batching import BatchLimits, pack
from tokpulse.ai.budget import BudgetGuard
from tokpulse.ai.cache import ChatCache, EmbeddingCache, chat_key, text_hash
from tokpulse.ai.errors import (
    BudgetExceeded,
    DimensionMismatch,
    MalformedResponse,
    NoProvider,
    PrivacyGuardUnavailable,
    ProviderError,
    ProviderUnavailable,
    RateLimitWait,
)
from tokpulse.ai.ledger import LedgerRow, write_rows
from tokpulse.ai.prices import cost_usd
from tokpulse.ai.providers import (
    LOCAL_MODEL,
    LocalEmbeddingProvider,
    OpenAIProvider,
    ProviderRateLimited,
)
from tokpulse.ai.ratelimit import Limits, RateLimiter, Reservation
from tokpulse.ai.tokens import count_chat_tokens, count_many, count_tokens
from tokpulse.settings import ConfigError, Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
ANALYZER_SOURCE = "deterministic-analyzer"


@dataclass(frozen=True)
class EmbedResult:
    """Vectors in input order (None where `errors` has the input's index)."""

    vectors: list[np.ndarray | None]
    errors: dict[int, str]
    provider: str
    model: str
    dims: int
    input_tokens: int  # billed by this call (cache hits bill nothing)
    cost_usd: float
    cache_hits: int  # inputs answered from the cache
    requests: int  # provider requests made (attempts included)


@dataclass(frozen=True)
class ChatResult:
    content: str | None  # placeholders restored
    source: str  # "openai" or "deterministic-analyzer"
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cache_hit: bool = False
    finish_reason: str | None = None
    request_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = field(default=None)


def check_namespace_dims(cur, namespace: str, dims: int, *, provider: str = "?", model: str = "?") -> None:
    """Raise `DimensionMismatch` when `namespace` in ai_embeddings holds vectors of another size.
    (The database enforces the same rule -- a trigger in the DEFAULT partition, the vector
    index's cast in a namespace's own -- this fails before any spend.)"""
    # Every row of a namespace has one dimension (the rule itself), so any one row tells:
    # one index probe, where `dims <> %s` would scan a whole namespace partition.
    cur.execute("SELECT dims, provider, model FROM ai_embeddings WHERE namespace = %s LIMIT 1", (namespace,))
    row = cur.fetchone()
    if row and int(row[0]) != int(dims):
        raise DimensionMismatch(
            f"namespace {namespace!r} holds {row[0]}-dim vectors ({row[1]}/{row[2]}); refusing {dims}-dim "
            f"vectors from {provider}/{model} (use another namespace or re-embed this one)"
        )


def _default_redis_url(settings: Settings) -> str:
    url = settings.redis_url or os.environ.get("REDIS_URL")
    if url:
        return url
    from tokpulse.embedded import resolve_urls

    urls, _ = resolve_urls(settings, start=False)
    if urls is None:
        raise ConfigError(
            "REDIS_URL",
            "not set and no embedded services are running: the AI gateway needs Redis "
            "for its fleet-wide rate limits (run `tokpulse services` or set REDIS_URL)",
        )
    os.environ.setdefault("DATABASE_URL", urls.database_url)
    return urls.redis_url


class Gateway:
    """See the module docstring. Build one with `get_gateway()`; the constructor is for tests."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis_client=None,
        guard=None,
        openai_provider: OpenAIProvider | None = None,
        local_provider: LocalEmbeddingProvider | None = None,
        key_prefix: str = "tokpulse:ai:",
        window_seconds: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.ai = settings.agent.ai
        if redis_client is None:
            import redis

            redis_client = redis.Redis.from_url(
                _default_redis_url(settings),
                socket_timeout=10,
                socket_connect_timeout=5,
                health_check_interval=30,
            )
        self._redis = redis_client
        if guard is None:
            try:
                from tokpulse.privacy import get_privacy_guard

                guard = get_privacy_guard(
                    strict_mode=settings.agent.privacy.strict_mode, config=settings.agent.privacy
                )
            except ImportError as exc:
                raise PrivacyGuardUnavailable(
                    f"the privacy guard could not be loaded ({exc}); "
                    "nothing is sent to an AI provider without it"
                ) from None
        self._guard = guard
        if openai_provider is None and settings.openai_api_key:
            openai_provider = OpenAIProvider(
                settings.openai_api_key,
                base_url=settings.openai_base_url,
                timeout=self.ai.retry.timeout_seconds,
            )
        self._openai = openai_provider
        self._local = local_provider or LocalEmbeddingProvider()
        self.limiter = RateLimiter(
            redis_client,
            prefix=key_prefix + "rl:",
            window_seconds=window_seconds,
            headroom=self.ai.limiter_headroom_percent / 100.0,
            burst=self.ai.limiter_burst_percent / 100.0,
            sleep=sleep,
        )
        self._chat_cache = ChatCache(
            redis_client, prefix=key_prefix + "chat:", ttl_seconds=self.ai.cache_ttl_seconds
        )
        self.budget = BudgetGuard(settings.monthly_budget)
        self._sleep = sleep
        self._rng = random.Random()

    # -- helpers -----------------------------------------------------------------------------
    @property
    def has_api_key(self) -> bool:
        return self._openai is not None

    def limits_for(self, model: str) -> Limits:
        lim = self.ai.rate_limits.get(model, self.ai.default_rate_limit)
        return Limits(lim.rpm, lim.tpm)

    def _max_wait(self, max_wait: float | None) -> float:
        return self.ai.max_wait_seconds if max_wait is None else float(max_wait)

    def _backoff(self, attempt: int) -> float:
        r = self.ai.retry
        cap = min(r.backoff_max_seconds, r.backoff_base_seconds * (2 ** (attempt - 1)))
        return self._rng.uniform(cap / 2, cap)  # "equal jitter": never 0, never in lock-step

    def _record(self, rows: list[LedgerRow]) -> None:
        write_rows(rows)

    # -- the one attempt loop ---------------------------------------------------------------
    def _call(
        self,
        *,
        operation: str,
        provider: Any,
        model: str,
        estimate: int,
        caller: str,
        essential: bool,
        max_wait: float,
        inputs: int,
        send: Callable[[], T],
        usage: Callable[[T], tuple[int, int, int]],
        request_id: Callable[[T], str | None],
    ) -> tuple[T, int, int, float, int]:
        """Budget, limiter, provider call, retries, reconcile, ledger. `usage(reply)` gives (input
        tokens, output tokens, tokens the rate limit counts). Returns (reply, in, out, cost, attempts)."""
        prices = self.ai.prices
        limits = self.limits_for(model) if provider.name == "openai" else None
        attempt = 0
        while True:
            attempt += 1

            def row(status: str, t0: float | None = None, n: int = attempt, **kw: Any) -> None:
                ms = None if t0 is None else (time.perf_counter() - t0) * 1000
                self._record(
                    [
                        LedgerRow(
                            caller=caller,
                            provider=provider.name,
                            model=model,
                            operation=operation,
                            inputs=inputs,
                            requested_tokens=estimate,
                            attempt=n,
                            essential=essential,
                            status=status,
                            latency_ms=ms,
                            **kw,
                        )
                    ]
                )

            try:
                self.budget.check(caller=caller, provider=provider.name, model=model, essential=essential)
            except BudgetExceeded as exc:
                row("refused", error=str(exc))
                raise
            res: Reservation | None = None
            if limits is not None:
                res = self.limiter.acquire(model, limits, estimate, max_wait)
            t0 = time.perf_counter()
            try:
                reply = send()
            except ProviderRateLimited as exc:
                row("rate_limited", t0, rate_limited=True, request_id=exc.request_id, error=str(exc))
                wait = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                if res is not None:
                    wait = max(wait, self.limiter.penalize(res, wait, exc.kind))
                if attempt >= self.ai.retry.max_attempts or wait > max_wait:
                    raise RateLimitWait(wait, model, "provider answered 429") from None
                if res is None:
                    self._sleep(wait)
                continue  # the next acquire() waits out the shared cool-down
            except MalformedResponse as exc:
                # A 200 the provider most likely billed: record the estimate, never as success.
                if res is not None:
                    self.limiter.finish(res)
                c = cost_usd(provider.name, model, estimate, 0, prices)
                row(
                    "error",
                    t0,
                    input_tokens=estimate,
                    cost_usd=c,
                    request_id=exc.request_id,
                    error=f"{exc} (usage unknown: estimated)",
                )
                self.budget.add(c)
                raise
            except ProviderUnavailable as exc:
                if res is not None:
                    self.limiter.finish(res)  # it may have been counted: keep the charge
                row("error", t0, request_id=exc.request_id, error=str(exc))
                if attempt >= self.ai.retry.max_attempts:
                    raise ProviderUnavailable(
                        f"{exc} (gave up after {attempt} attempts)",
                        status=exc.status,
                        request_id=exc.request_id,
                        transient=True,
                    ) from None
                self._sleep(self._backoff(attempt))
                continue
            except ProviderError as exc:
                if res is not None:
                    if exc.status is not None and 400 <= exc.status < 500:
                        self.limiter.refund(res)  # refused before it counted
                    else:
                        self.limiter.finish(res)
                row("error", t0, request_id=exc.request_id, error=str(exc))
                raise
            except BaseException as exc:
                if res is not None:
                    self.limiter.finish(res)
                row("error", t0, error=f"{type(exc).__name__}: {str(exc)[:200]}")
                raise
            tin, tout, limited = usage(reply)
            if res is not None:
                self.limiter.finish(res, limited)
            c = cost_usd(provider.name, model, tin, tout, prices)
            row("ok", t0, input_tokens=tin, output_tokens=tout, cost_usd=c, request_id=request_id(reply))
            self.budget.add(c)
            return reply, tin, tout, c, attempt

    # -- embeddings ----------------------------------------------------------------------
    def _embed_target(self, model: str | None) -> tuple[Any, str]:
        if self._openai is not None:
            return self._openai, model or self.settings.agent.models.embeddings
        if model not in (None, LOCAL_MODEL):
            raise NoProvider(
                f"embedding model {model!r} needs OPENAI_API_KEY; without a key only the local "
                f"{LOCAL_MODEL} is available"
            )
        return self._local, LOCAL_MODEL

    def embed(
        self,
        texts: Sequence[str],
        *,
        caller: str,
        namespace: str | None = None,
        essential: bool = True,
        model: str | None = None,
        max_wait: float | None = None,
    ) -> EmbedResult:
        """Embed `texts` (redacted first). Inputs over the per-input token limit (or empty) get an
        entry in `errors` instead of failing the call. With `namespace`, vectors whose dimension
        differs from what the namespace already holds are refused before anything is spent.

        Raises `RateLimitWait` when the shared limit would hold the caller longer than
        `max_wait` seconds (default `ai.max_wait_seconds`; `math.inf` to wait), `BudgetExceeded`
        for a non-essential call past the monthly budget, `ProviderError` when the provider fails."""
        started = time.perf_counter()
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("embed() takes a list of strings")
        from workers import db

        provider, model = self._embed_target(model)
        wait_budget = self._max_wait(max_wait)
        known_dims = provider.embedding_dims(model)
        if namespace is not None and known_dims is not None:
            with db.transaction() as cur:
                check_namespace_dims(cur, namespace, known_dims, provider=provider.name, model=model)

        redacted = [self._guard.redact(t) for t in texts]
        hashes = [text_hash(r) for r in redacted]
        first: dict[bytes, int] = {}
        for i, h in enumerate(hashes):
            first.setdefault(h, i)
        with db.transaction() as cur:
            cached = EmbeddingCache.get_many(cur, provider.name, model, list(first))
            lookup_ms = (time.perf_counter() - started) * 1000
            if len(cached) == len(first):
                # Everything cached: the ledger row rides in the lookup's transaction (one
                # commit), which keeps a cache hit around a millisecond.
                return self._finish_embed(
                    hashes,
                    {},
                    cached,
                    {},
                    provider.name,
                    model,
                    None,
                    known_dims,
                    0,
                    0.0,
                    0,
                    caller,
                    essential,
                    lookup_ms,
                    cur,
                )
        vectors: dict[bytes, np.ndarray] = {h: v for h, (v, _) in cached.items()}
        misses = [h for h in first if h not in cached]
        miss_texts = [redacted[first[h]] for h in misses]
        counts = count_many(miss_texts)

        limits = BatchLimits(
            self.ai.batch.max_inputs, self.ai.batch.max_request_tokens, self.ai.batch.max_input_tokens
        )
        if provider.name == "openai":
            cap = self.limiter.capacity_tokens(self.limits_for(model))
            limits = BatchLimits(
                limits.max_inputs, min(limits.max_request_tokens, cap), limits.max_input_tokens
            )
        packing = pack(counts, limits)
        errors_by_hash = {misses[j]: msg for j, msg in packing.oversize.items()}

        billed = 0
        cost = 0.0
        requests = 0
        dims: int | None = None
        for batch in packing.batches:
            batch_texts = [miss_texts[j] for j in batch]
            estimate = sum(counts[j] for j in batch)

            def send(bt=batch_texts):
                return provider.embed(bt, model)

            reply, tin, _, c, attempts = self._call(
                operation="embedding",
                provider=provider,
                model=model,
                estimate=estimate,
                caller=caller,
                essential=essential,
                max_wait=wait_budget,
                inputs=len(batch),
                send=send,
                usage=lambda r, e=estimate: (
                    (r.input_tokens if r.input_tokens is not None else e),
                    0,
                    (r.input_tokens if r.input_tokens is not None else e),
                ),
                request_id=lambda r: r.request_id,
            )
            billed += tin
            cost += c
            requests += attempts
            got = int(reply.vectors.shape[1])
            if dims is None:
                # The response decides (a compatible server, or a model served at another size);
                # the table of known sizes only let the namespace be checked before spending.
                dims = got
                if namespace is not None and got != known_dims:
                    with db.transaction() as cur:
                        check_namespace_dims(cur, namespace, got, provider=provider.name, model=model)
            elif got != dims:
                raise DimensionMismatch(
                    f"{provider.name}/{model} returned {got}-dim and {dims}-dim vectors in one call; "
                    "the model changed under its name"
                )
            rows = []
            for pos, j in enumerate(batch):
                h = misses[j]
                vectors[h] = reply.vectors[pos]
                rows.append((h, counts[j], reply.vectors[pos]))
            with db.transaction() as cur:
                EmbeddingCache.put_many(cur, provider.name, model, rows)

        return self._finish_embed(
            hashes,
            vectors,
            cached,
            errors_by_hash,
            provider.name,
            model,
            dims,
            known_dims,
            billed,
            cost,
            requests,
            caller,
            essential,
            lookup_ms,
            None,
        )

    def _finish_embed(
        self,
        hashes,
        vectors,
        cached,
        errors_by_hash,
        provider: str,
        model: str,
        dims: int | None,
        known_dims: int | None,
        billed: int,
        cost: float,
        requests: int,
        caller: str,
        essential: bool,
        lookup_ms: float,
        cur,
    ) -> EmbedResult:
        """Vectors in input order, the cache-hit ledger row, the result."""
        out: list[np.ndarray | None] = []
        errors: dict[int, str] = {}
        hit_inputs = 0
        hit_tokens = 0
        for i, h in enumerate(hashes):
            hit = cached.get(h)
            v = hit[0] if hit is not None else vectors.get(h)
            if v is None:
                errors[i] = errors_by_hash.get(h, "not embedded")
                out.append(None)
                continue
            if hit is not None:
                hit_inputs += 1
                hit_tokens += hit[1]
            out.append(v)
        all_dims = {int(v.shape[0]) for v in out if v is not None}
        if len(all_dims) > 1:
            raise DimensionMismatch(
                f"{provider}/{model}: cached vectors of {sorted(all_dims)} dims mixed in "
                "one result; the model changed under its name (clear its ai_embedding_cache)"
            )
        if hit_inputs:
            row = LedgerRow(
                caller=caller,
                provider=provider,
                model=model,
                operation="embedding",
                status="ok",
                cache_hit=True,
                inputs=hit_inputs,
                cached_tokens=hit_tokens,
                latency_ms=lookup_ms,
                essential=essential,
            )
            if cur is None:
                self._record([row])
            else:
                try:
                    write_rows([row], cur, async_commit=True)
                except Exception as exc:  # noqa: BLE001 - the answer stands; see ledger's docstring
                    cur.connection.rollback()
                    log.error("ai ledger: could not record a cache hit: %s", type(exc).__name__)
        if dims is None:
            dims = all_dims.pop() if all_dims else (known_dims or 0)
        return EmbedResult(out, errors, provider, model, dims, billed, round(cost, 8), hit_inputs, requests)

    # -- chat ------------------------------------------------------------------------------
    @staticmethod
    def _redact_message(m: dict[str, Any], session) -> dict[str, Any]:
        if not isinstance(m, dict) or "role" not in m:
            raise TypeError("chat messages are dicts with a 'role' (and usually 'content')")
        out = dict(m)
        content = m.get("content")
        if isinstance(content, str):
            out["content"] = session.redact(content)
        elif isinstance(content, list):
            parts = []
            for p in content:
                if isinstance(p, dict) and isinstance(p.get("text"), str):
                    p = {**p, "text": session.redact(p["text"])}
                elif isinstance(p, str):
                    p = session.redact(p)
                elif isinstance(p, dict):
                    p = session.redact_object(p)
                parts.append(p)
            out["content"] = parts
        elif content is not None:
            out["content"] = session.redact_object(content)
        for k, v in m.items():
            if k not in ("role", "content"):
                out[k] = session.redact(v) if isinstance(v, str) else session.redact_object(v)
        return out

    def chat(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        caller: str,
        analyzer: Callable[[list[dict[str, Any]]], str] | None = None,
        essential: bool = False,
        model: str | None = None,
        response_format: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cache: bool = True,
        max_wait: float | None = None,
    ) -> ChatResult:
        """A chat completion with every message redacted (reversible placeholders such as
        `[EMAIL_1]`, restored in the answer). Without OPENAI_API_KEY, `analyzer(messages)` (the
        caller's deterministic fallback, given the original messages) answers and the result
        says so in `source`. Raises like `embed`; `NoProvider` with neither key nor analyzer."""
        started = time.perf_counter()
        messages = list(messages)
        if not messages:
            raise ValueError("chat() needs at least one message")
        if self._openai is None:
            return self._analyze(messages, caller, analyzer, essential)
        model = model or self.settings.agent.models.reasoning
        session = self._guard.reversible()
        red = [self._redact_message(m, session) for m in messages]
        params: dict[str, Any] = {}
        if response_format is not None:
            params["response_format"] = response_format
        if max_tokens is not None:
            params["max_tokens"] = int(max_tokens)
        if temperature is not None:
            params["temperature"] = temperature
        key = chat_key(model, params, red)
        if cache:
            hit = self._chat_cache.get(key)
            if hit is not None:
                self._record(
                    [
                        LedgerRow(
                            caller=caller,
                            provider="openai",
                            model=model,
                            operation="chat",
                            status="ok",
                            cache_hit=True,
                            inputs=len(red),
                            latency_ms=(time.perf_counter() - started) * 1000,
                            cached_tokens=int(hit.get("input_tokens", 0)) + int(hit.get("output_tokens", 0)),
                            request_id=hit.get("request_id"),
                            essential=essential,
                        )
                    ]
                )
                return ChatResult(
                    session.restore(hit["content"]) if isinstance(hit.get("content"), str) else None,
                    "openai",
                    "openai",
                    model,
                    0,
                    0,
                    0.0,
                    True,
                    hit.get("finish_reason"),
                    hit.get("request_id"),
                    session.restore_object(hit["tool_calls"]) if hit.get("tool_calls") else None,
                )
        prompt = count_chat_tokens(red)
        estimate = prompt + (int(max_tokens) if max_tokens else 0)

        def usage(r):
            tin = r.input_tokens if r.input_tokens is not None else prompt
            tout = r.output_tokens if r.output_tokens is not None else count_tokens(r.content or "")
            return tin, tout, tin + (int(max_tokens) if max_tokens else tout)

        provider = self._openai
        reply, tin, tout, c, _ = self._call(
            operation="chat",
            provider=provider,
            model=model,
            estimate=estimate,
            caller=caller,
            essential=essential,
            max_wait=self._max_wait(max_wait),
            inputs=len(red),
            send=lambda: provider.chat(red, model, params),
            usage=usage,
            request_id=lambda r: r.request_id,
        )
        if cache:
            try:
                self._chat_cache.put(
                    key,
                    {
                        "content": reply.content,
                        "finish_reason": reply.finish_reason,
                        "input_tokens": tin,
                        "output_tokens": tout,
                        "request_id": reply.request_id,
                        "tool_calls": reply.tool_calls,
                    },
                )
            except Exception as exc:  # noqa: BLE001 - a cache miss next time is harmless
                log.warning("ai chat cache: could not store an answer: %s", type(exc).__name__)
        return ChatResult(
            session.restore(reply.content) if reply.content is not None else None,
            "openai",
            "openai",
            model,
            tin,
            tout,
            c,
            False,
            reply.finish_reason,
            reply.request_id,
            session.restore_object(reply.tool_calls) if reply.tool_calls else None,
        )

    def _analyze(self, messages: list[dict[str, Any]], caller: str, analyzer, essential: bool) -> ChatResult:
        if analyzer is None:
            raise NoProvider(
                f"chat from {caller}: no OPENAI_API_KEY is set and no analyzer= fallback was given "
                "(set OPENAI_API_KEY, or pass the component's deterministic analyzer)"
            )
        name = getattr(analyzer, "__qualname__", None) or type(analyzer).__name__
        t0 = time.perf_counter()
        try:
            content = analyzer(messages)
        except Exception as exc:
            self._record(
                [
                    LedgerRow(
                        caller=caller,
                        provider=ANALYZER_SOURCE,
                        model=name,
                        operation="chat",
                        status="error",
                        inputs=len(messages),
                        essential=essential,
                        latency_ms=(time.perf_counter() - t0) * 1000,
                        error=f"{type(exc).__name__}: {str(exc)[:200]}",
                    )
                ]
            )
            raise
        ms = (time.perf_counter() - t0) * 1000
        if not isinstance(content, str):
            content = str(content)
        tin, tout = count_chat_tokens(messages), count_tokens(content)
        self._record(
            [
                LedgerRow(
                    caller=caller,
                    provider=ANALYZER_SOURCE,
                    model=name,
                    operation="chat",
                    status="ok",
                    input_tokens=tin,
                    output_tokens=tout,
                    inputs=len(messages),
                    latency_ms=ms,
                    essential=essential,
                )
            ]
        )
        return ChatResult(content, ANALYZER_SOURCE, ANALYZER_SOURCE, name, tin, tout, 0.0, False, "stop")


_gateway: tuple[int, Gateway] | None = None
_gateway_lock = threading.Lock()


def get_gateway(settings: Settings | None = None) -> Gateway:
    """This process's gateway (built on first use, rebuilt after a fork)."""
    global _gateway
    g = _gateway
    if g is not None and g[0] == os.getpid() and settings is None:
        return g[1]
    with _gateway_lock:
        if settings is None and _gateway is not None and _gateway[0] == os.getpid():
            return _gateway[1]
        if settings is None:
            from tokpulse.settings import load_settings

            settings = load_settings()
        gw = Gateway(settings)
        _gateway = (os.getpid(), gw)
        return gw


def reset_gateway() -> None:
    """Forget this process's gateway (tests; configuration reloads)."""
    global _gateway
    with _gateway_lock:
        _gateway = None
