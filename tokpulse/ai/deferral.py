"""Re-scheduling a Celery task that the shared rate limit would hold too long.

    @fleet_task(app, NAME, bind=True, retry_for=(ProviderUnavailable,), max_retries=5, ...)
    def job(self, ...):
        try:
            ...
        except RateLimitWait as exc:
            raise defer_task(self, exc) from None

Waiting for the rate limit is not a failure, so a deferral must not use up the task's
retries. Celery's `self.retry()` adds one to `request.retries`: the counter that
`max_retries` bounds and that autoretry's exponential backoff grows with. A job that
merely waited a few times would then have no retries left for a real outage
(ProviderUnavailable, OperationalError), or fail with MaxRetriesExceeded for waiting.
(`self.retry(max_retries=N)` is no way out either: it also leaves `override_max_retries`
set on the task object, which raises the limit of the next autoretry in that process.)

So a deferral re-sends the same message as `retry()` would (same task id, args,
`retries`, links, time limits, expiry; JSON like every message), with a countdown, and
counts deferrals in a message header of its own, capped by `max_deferrals`. Celery
carries custom headers through later retries (`request.headers`), so the cap holds for
the job's whole life."""

from __future__ import annotations

import logging
import math
import random
from typing import Any

from celery.exceptions import Reject, Retry

from tokpulse.ai.errors import DeferralLimitReached, RateLimitWait

log = logging.getLogger(__name__)

DEFERRALS_HEADER = "tokpulse_deferrals"
# Each deferral waits at least `ai.max_wait_seconds` (the wait was longer than that), so
# 100 deferrals are minutes to hours of waiting: enough for a rate-limit window, not a
# job circling forever under a limit it can never meet.
MAX_DEFERRALS = 100


def deferrals(request: Any) -> int:
    """How many times the job behind this task request has been deferred so far."""
    value = (getattr(request, "headers", None) or {}).get(DEFERRALS_HEADER)
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def defer_countdown(exc: RateLimitWait) -> int:
    """Whole seconds until the re-sent task runs: the wait, plus jitter so jobs deferred
    together do not all come back in the same second."""
    return math.ceil(exc.countdown + random.uniform(0, min(5.0, max(1.0, exc.seconds * 0.1))))


def defer_task(task: Any, exc: RateLimitWait, *, max_deferrals: int = MAX_DEFERRALS) -> BaseException:
    """For a bound Celery task: re-schedule it after the wait instead of holding the worker
    slot, without using up its retries. Returns the exception to raise:

    - celery's `Retry` once the message is re-sent (the worker records state RETRY and
      acknowledges the current message, as for `self.retry()`);
    - `DeferralLimitReached` when the job was already deferred `max_deferrals` times
      (the task fails; it is not in any `retry_for`);
    - `exc` itself outside a worker (called directly or eagerly): nothing to re-send.
    """
    request = task.request
    if request.called_directly or request.is_eager:
        return exc
    done = deferrals(request)
    if done >= max_deferrals:
        return DeferralLimitReached(
            f"{task.name}[{request.id}]: still rate-limited on {exc.model} after {done} deferrals "
            f"(the cap is {max_deferrals}); raise ai.rate_limits for {exc.model} in the agent config "
            "or send less work at once, then send the job again"
        )
    countdown = defer_countdown(exc)
    headers = {**(request.headers or {}), DEFERRALS_HEADER: done + 1}
    # What Task.retry() sends, minus its `retries=request.retries + 1`.
    sig = task.signature_from_request(request, countdown=countdown, headers=headers)
    try:
        sig.apply_async()
    except Exception as publish_error:  # noqa: BLE001 - as Task.retry(): the broker refused the re-send
        log.warning("%s[%s]: could not re-send the deferred task: %s", task.name, request.id,
                    type(publish_error).__name__)
        return Reject(publish_error, requeue=False)
    return Retry(exc=exc, when=countdown, sig=sig)
