"""The fleet's Celery app plus test-only probe tasks, for workers started by the e2e tests
with plain `celery -A tests.e2e.testapp worker -Q <queue>`. Probe tasks use the product's
base task and `fleet_task` defaults, so what they show holds for product tasks."""

from __future__ import annotations

import os
import time

import redis

from workers.app import app
from workers.base import fleet_task

app.loader.import_default_modules()

if os.environ.get("TEST_VISIBILITY_TIMEOUT"):
    # Only the whole-worker-killed test shortens this, so redelivery happens in seconds.
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "visibility_timeout": int(os.environ["TEST_VISIBILITY_TIMEOUT"]),
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }


def _r() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@fleet_task(app, "tokpulse_test.mark", idempotent=True, soft_time_limit=25, time_limit=30)
def mark(key: str, first_attempt_sleep: float = 0.0) -> int:
    """Counts attempts; the first attempt can sleep so a test can kill it mid-task."""
    r = _r()
    attempt = r.incr(f"{key}:attempts")
    r.rpush(f"{key}:pids", os.getpid())
    if attempt == 1 and first_attempt_sleep:
        time.sleep(first_attempt_sleep)
    r.incr(f"{key}:done")
    return attempt


@app.task(name="tokpulse_test.tick")
def tick(key: str) -> None:
    _r().rpush(key, repr(time.time()))
