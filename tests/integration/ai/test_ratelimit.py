"""The Redis limiter: atomic reservations shared by every limiter on the same prefix."""

from __future__ import annotations

import math
import time
import uuid

import pytest

from tokpulse.ai.errors import RateLimitWait, RequestTooLarge
from tokpulse.ai.ratelimit import Limits, RateLimiter


@pytest.fixture
def limiter_pair(redis_client):
    prefix = f"tokpulse:test:{uuid.uuid4().hex[:8]}:rl:"
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # records, and really waits (the cool-down is Redis time)
        waits.append(seconds)
        time.sleep(seconds)

    a = RateLimiter(redis_client, prefix=prefix, headroom=0.0, burst=1.0, sleep=sleep)
    b = RateLimiter(redis_client, prefix=prefix, headroom=0.0, burst=1.0, sleep=sleep)
    yield a, b, waits
    for k in redis_client.scan_iter(match=prefix + "*"):
        redis_client.delete(k)


def test_bucket_is_shared_and_reservations_queue(limiter_pair):
    a, b, _ = limiter_pair
    lim = Limits(rpm=600, tpm=6000)  # 10 requests/s, 100 tokens/s
    assert a.reserve("m", lim, 3000, max_wait=0).wait == 0
    assert b.reserve("m", lim, 3000, max_wait=0).wait == 0  # the other process's view: bucket now empty
    r = a.reserve("m", lim, 500, max_wait=10)  # must wait ~5 s for 500 tokens at 100/s
    assert r.wait == pytest.approx(5.0, abs=0.2)
    r2 = b.reserve("m", lim, 500, max_wait=20)  # queued behind the first reservation
    assert r2.wait == pytest.approx(10.0, abs=0.2)


def test_too_long_a_wait_reserves_nothing(limiter_pair):
    a, b, _ = limiter_pair
    lim = Limits(rpm=600, tpm=6000)
    a.reserve("m", lim, 6000, max_wait=0)
    with pytest.raises(RateLimitWait) as err:
        a.reserve("m", lim, 600, max_wait=1)
    assert err.value.seconds == pytest.approx(6.0, abs=0.2) and err.value.countdown == 6
    # nothing was taken: the same request still needs the same wait
    assert b.reserve("m", lim, 600, max_wait=100).wait == pytest.approx(6.0, abs=0.2)


def test_requests_per_minute_bind_too(limiter_pair):
    a, _, _ = limiter_pair
    lim = Limits(rpm=3, tpm=10**9)  # one request per 20 s
    for _ in range(3):
        assert a.reserve("m", lim, 1, max_wait=0).wait == 0
    with pytest.raises(RateLimitWait) as err:
        a.reserve("m", lim, 1, max_wait=1)
    assert err.value.seconds == pytest.approx(20.0, abs=0.5)


def test_models_have_separate_buckets(limiter_pair):
    a, _, _ = limiter_pair
    lim = Limits(rpm=600, tpm=6000)
    a.reserve("m1", lim, 6000, max_wait=0)
    assert a.reserve("m2", lim, 6000, max_wait=0).wait == 0


def test_reconcile_refunds_and_charges(limiter_pair):
    a, b, _ = limiter_pair
    lim = Limits(rpm=600, tpm=6000)
    res = a.reserve("m", lim, 6000, max_wait=0)
    a.reconcile(res, 1000)  # the provider counted only 1000: 5000 come back
    assert b.reserve("m", lim, 5000, max_wait=0).wait == 0
    res2 = b.reserve("m", lim, 1, max_wait=100)
    b.reconcile(res2, 1001)  # counted 1000 more than estimated
    assert b.reserve("m", lim, 100, max_wait=100).wait >= 10.0


def test_a_429_cools_down_every_caller(limiter_pair):
    a, b, slept = limiter_pair
    lim = Limits(rpm=600, tpm=60_000)
    res = a.reserve("m", lim, 100, max_wait=0)
    left = a.penalize(res, 0.6, "tokens")
    assert left == pytest.approx(0.6, abs=0.1)
    assert b.cooldown_remaining("m") > 0.4
    with pytest.raises(RateLimitWait):  # the other process is slowed, without sending anything
        b.reserve("m", lim, 100, max_wait=0.1)
    b.acquire("m", lim, 100, max_wait=5)
    assert slept and slept[0] >= 0.4
    assert b.cooldown_remaining("m") == 0


def test_sleepers_requeue_behind_a_cool_down(redis_client):
    prefix = f"tokpulse:test:{uuid.uuid4().hex[:8]}:rl:"
    other = RateLimiter(redis_client, prefix=prefix, headroom=0.0, burst=1.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        if not slept:  # while this caller sleeps, another process gets a 429 (1 s cool-down)
            other.penalize(other.reserve("m", lim, 5, max_wait=10), 1.0, "tokens")
        slept.append(seconds)
        time.sleep(seconds)

    me = RateLimiter(redis_client, prefix=prefix, headroom=0.0, burst=1.0, sleep=sleep)
    lim = Limits(rpm=6000, tpm=600)  # 10 tokens/s
    me.finish(me.reserve("m", lim, 600, max_wait=0))  # sent and answered: bucket empty
    me.acquire("m", lim, 5, max_wait=10)
    assert len(slept) == 2 and slept[0] == pytest.approx(0.5, abs=0.1)
    assert slept[1] >= 0.4  # re-queued behind the cool-down instead of firing into it
    assert me.cooldown_remaining("m") == 0


def test_a_request_larger_than_the_budget_is_refused(limiter_pair):
    a, _, _ = limiter_pair
    with pytest.raises(RequestTooLarge, match="whole per-minute budget"):
        a.reserve("m", Limits(rpm=10, tpm=1000), 1001, max_wait=math.inf)


def test_headroom_and_burst_keep_below_the_limit(redis_client):
    lim = RateLimiter(redis_client, prefix=f"tokpulse:test:{uuid.uuid4().hex[:8]}:")  # 2% / 90% defaults
    limits = Limits(rpm=100, tpm=100_000)
    assert lim.capacity_tokens(limits) == 90_000  # at most 90% of a minute's limit at once
    lim.reserve("m", limits, 90_000, max_wait=0)
    with pytest.raises(RateLimitWait) as err:
        lim.reserve("m", limits, 980, max_wait=0.1)
    assert err.value.seconds == pytest.approx(0.6, abs=0.05)  # refills at 98%: 980 tokens in 0.6 s


def test_a_429_accounts_for_reservations_not_yet_answered(limiter_pair):
    a, b, _ = limiter_pair
    lim = Limits(rpm=6000, tpm=6000)  # 100 tokens/s
    waiting = a.reserve("m", lim, 1000, max_wait=0)  # reserved, not yet answered
    refused = b.reserve("m", lim, 1000, max_wait=0)
    # the provider says the 1000 refused tokens fit in 2 s: it holds 800 now, of which the
    # unanswered reservation will take 1000 -> we may count on -200, i.e. 12 s for 1000 more
    b.penalize(refused, 2.0, "tokens")
    with pytest.raises(RateLimitWait) as err:
        b.reserve("m", lim, 1000, max_wait=0)
    assert err.value.seconds == pytest.approx(12.0, abs=0.3)
    a.finish(waiting, 1000)  # answered: no longer pending, nothing changes in the bucket
    with pytest.raises(RateLimitWait) as err:
        b.reserve("m", lim, 1000, max_wait=0)
    assert err.value.seconds == pytest.approx(12.0, abs=0.3)


def test_a_wait_interrupted_by_a_time_limit_gives_its_slot_back(redis_client):
    """SoftTimeLimitExceeded (or a Redis error) while sleeping for a reservation refunds it,
    so the next caller is not queued behind a call that will never happen."""
    prefix = f"tokpulse:test:{uuid.uuid4().hex[:8]}:rl:"

    class Interrupted(BaseException):
        pass

    def sleep(seconds: float) -> None:
        raise Interrupted

    lim = Limits(rpm=600, tpm=6000)  # 100 tokens/s
    a = RateLimiter(redis_client, prefix=prefix, headroom=0.0, burst=1.0, sleep=sleep)
    b = RateLimiter(redis_client, prefix=prefix, headroom=0.0, burst=1.0)
    try:
        assert b.reserve("m", lim, 6000, max_wait=0).wait == 0  # bucket empty now
        with pytest.raises(Interrupted):
            a.acquire("m", lim, 500, max_wait=30)  # would wait ~5 s; interrupted while waiting
        # Without the refund this would queue behind the abandoned 500 tokens (~10 s).
        assert b.reserve("m", lim, 500, max_wait=30).wait == pytest.approx(5.0, abs=0.3)
    finally:
        for k in redis_client.scan_iter(match=prefix + "*"):
            redis_client.delete(k)
