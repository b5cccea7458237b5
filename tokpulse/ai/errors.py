"""Errors the AI gateway raises. Every message is one line that says what, where and what
to do; none ever contains an API key."""

from __future__ import annotations


class AIError(Exception):
    """Base class of every gateway error."""


class RateLimitWait(AIError):
    """The shared rate limit would hold this caller longer than `ai.max_wait_seconds`.

    Nothing was sent and nothing was reserved. A Celery task should re-schedule itself
    instead of holding its worker slot: `raise defer_task(self, exc)` (tokpulse.ai.deferral;
    unlike `self.retry()` it leaves the task's retries for real failures). Work finished
    before the wait (embedding batches) is cached, so the retry does not pay for it again."""

    def __init__(self, seconds: float, model: str, reason: str = "rate limit"):
        self.seconds = max(0.0, float(seconds))
        self.model = model
        self.reason = reason
        super().__init__(
            f"{model}: {reason} needs a {self.seconds:.1f}s wait; retry later (countdown={self.countdown}s)"
        )

    @property
    def countdown(self) -> int:
        """Whole seconds to wait before trying again (at least 1)."""
        return max(1, int(self.seconds + 0.999))


class DeferralLimitReached(AIError):
    """A task re-scheduled itself for the shared rate limit as often as `defer_task` allows
    and would still have to wait."""


class BudgetExceeded(AIError):
    """Month-to-date spend is past MONTHLY_BUDGET and the call was marked non-essential."""

    def __init__(self, spent: float, budget: float, caller: str, model: str):
        self.spent = spent
        self.budget = budget
        super().__init__(
            f"AI budget exceeded: month-to-date ${spent:.2f} of ${budget:.2f} (MONTHLY_BUDGET); "
            f"non-essential {model} call from {caller} refused (raise MONTHLY_BUDGET or mark it essential)"
        )


class ProviderError(AIError):
    """The provider refused or failed the request (after the bounded retries, if transient)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        transient: bool = False,
    ):
        self.status = status
        self.request_id = request_id
        self.transient = transient
        super().__init__(message)


class ProviderUnavailable(ProviderError):
    """5xx, timeouts and connection failures that outlasted the retries."""


class MalformedResponse(ProviderError):
    """The provider answered 200 with a body that is not a valid response."""


class RequestTooLarge(AIError):
    """A single request needs more tokens than the model's whole per-minute budget."""


class NoProvider(AIError):
    """No provider can serve the call (e.g. chat with no OPENAI_API_KEY and no analyzer)."""


class DimensionMismatch(AIError):
    """A namespace already holds vectors of another dimension."""


class PrivacyGuardUnavailable(AIError):
    """The privacy guard could not be loaded; nothing is sent without it."""
