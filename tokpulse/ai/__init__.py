"""AI gateway: every chat completion and embedding goes through one private, rate-limited,
accounted path.

    from tokpulse.ai import get_gateway, RateLimitWait, defer_task

    gw = get_gateway()
    res = gw.embed(["chunk one", "chunk two"], caller="tokpulse.embed_docs", namespace="docs")
    res.vectors, res.errors, res.provider, res.model, res.dims, res.cost_usd
    ans = gw.chat([{"role": "user", "content": "..."}], caller="tokpulse.insights", analyzer=fallback)
    ans.content, ans.source            # "openai" or "deterministic-analyzer"

    # in a bound Celery task:
    except RateLimitWait as exc:
        raise defer_task(self, exc) from None  # run again later; does not use up max_retries

Every request is redacted by the privacy guard first (reversible for chat), answered from
the cache when possible, checked against MONTHLY_BUDGET, admitted by the fleet-wide Redis
rate limiter (RPM/TPM per model from `ai.rate_limits`), retried with backoff on 5xx and
timeouts, and written to the `ai_usage_metrics` ledger. This package is the only place
that imports `openai`."""

from tokpulse.ai.client import (
    ChatResult,
    EmbedResult,
    Gateway,
    check_namespace_dims,
    get_gateway,
    reset_gateway,
)
from tokpulse.ai.deferral import defer_task
from tokpulse.ai.errors import (
    AIError,
    BudgetExceeded,
    DeferralLimitReached,
    DimensionMismatch,
    MalformedResponse,
    NoProvider,
    PrivacyGuardUnavailable,
    ProviderError,
    ProviderUnavailable,
    RateLimitWait,
    RequestTooLarge,
)

__all__ = [
    "AIError",
    "BudgetExceeded",
    "ChatResult",
    "DeferralLimitReached",
    "DimensionMismatch",
    "EmbedResult",
    "Gateway",
    "MalformedResponse",
    "NoProvider",
    "PrivacyGuardUnavailable",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimitWait",
    "RequestTooLarge",
    "check_namespace_dims",
    "defer_task",
    "get_gateway",
    "reset_gateway",
]
