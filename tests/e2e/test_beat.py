"""Two beat processes: exactly one schedules; each period fires exactly once."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from tests.conftest import PYTHON, wait_for

pytestmark = pytest.mark.e2e
PERIOD = 2.0


def _fires(redis_client, key) -> list[float]:
    return sorted(float(x) for x in redis_client.lrange(key, 0, -1))


def _assert_once_per_period(fires: list[float]) -> None:
    gaps = [b - a for a, b in zip(fires, fires[1:], strict=False)]
    assert all(g > PERIOD * 0.6 for g in gaps), f"a period fired twice: gaps {gaps}"
    assert all(g < PERIOD * 1.9 for g in gaps), f"a period was skipped: gaps {gaps}"


def test_two_beats_fire_each_period_exactly_once_and_fail_over(
    spawn, start_worker, redis_client, tmp_path, clean_queues
):
    start_worker("default", app="tests.e2e.testapp", concurrency=2)
    key = f"ticks-{uuid.uuid4().hex}"
    env = {"TEST_REDBEAT_PREFIX": f"tokpulse-test:{uuid.uuid4().hex}:", "TEST_TICK_KEY": key,
           "TEST_TICK_SECONDS": str(PERIOD)}
    beats = [
        spawn([PYTHON, "-m", "celery", "-A", "tests.e2e.beatapp", "beat", "-l", "INFO",
               "-s", str(tmp_path / f"beat{i}.db")], env=env, name=f"beat{i}")
        for i in range(2)
    ]
    wait_for(lambda: len(_fires(redis_client, key)) >= 1, 30, message="first tick")
    start = time.time()
    wait_for(lambda: len([f for f in _fires(redis_client, key) if f > start]) >= 3, 30, message="3 periods")
    fires = _fires(redis_client, key)
    window = [f for f in fires if f > start]
    assert len(window) == 3 or (len(window) == 4 and window[-1] - window[0] >= 2.5 * PERIOD)
    _assert_once_per_period(fires)

    holders = [b for b in beats if "Acquired lock" in b.output()]
    assert len(holders) == 1, "exactly one beat holds the lock"

    # Fail-over: kill the active beat; the standby takes the lock once it expires and
    # the schedule continues, still once per period.
    active, standby = holders[0], next(b for b in beats if b is not holders[0])
    os.killpg(active.pid, signal.SIGKILL)
    killed_at = time.time()
    wait_for(lambda: "Acquired lock" in standby.output(), 30, message="standby to take the lock")
    wait_for(lambda: len([f for f in _fires(redis_client, key) if f > killed_at + 6]) >= 2, 40,
             message="ticks after fail-over")
    after = [f for f in _fires(redis_client, key) if f > killed_at + 6]
    _assert_once_per_period(after)
