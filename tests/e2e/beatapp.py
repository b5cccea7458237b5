"""Beat with a 2-second test schedule, under a per-test RedBeat key prefix. Everything
else — the RedBeat scheduler and its lock — is the fleet's own configuration."""

from __future__ import annotations

import os

from tests.e2e.testapp import app

PREFIX = os.environ["TEST_REDBEAT_PREFIX"]
app.conf.beat_schedule = {
    "tick": {
        "task": "tokpulse_test.tick",
        "schedule": float(os.environ.get("TEST_TICK_SECONDS", "2")),
        "args": [os.environ["TEST_TICK_KEY"]],
        "options": {"queue": "default", "expires": 30},
    }
}
app.conf.redbeat_key_prefix = PREFIX
app.conf.redbeat_lock_key = PREFIX + "lock"
app.conf.redbeat_lock_timeout = 6  # production: 60 s; short here so failover fits in a test
app.conf.beat_max_loop_interval = 1
