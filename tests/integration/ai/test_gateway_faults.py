"""429 storms, 5xx, timeouts, malformed answers, refused keys."""

from __future__ import annotations

import time

import pytest

from tests.integration.ai.conftest import ledger_rows, unique_texts
from tokpulse.ai import MalformedResponse, ProviderError, ProviderUnavailable, RateLimitWait
from tokpulse.ai.client import Gateway

MODEL = "text-embedding-3-small"
MSG = [{"role": "user", "content": "Summarise the deploy log."}]


def test_429_storm_honours_retry_after_and_recovers(fake, make_gateway, caller):
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    gw = make_gateway(fake, sleep=sleep)
    fake.force_429_next(3, retry_after=0.25, kind="tokens")
    res = gw.embed(unique_texts(5), caller=caller)
    assert res.errors == {} and res.requests == 4
    assert [r["status"] for r in fake.requests] == [429, 429, 429, 200]
    assert sum(slept) >= 3 * 0.2  # each retry waited out the shared cool-down (retry-after-ms=250)
    rows = ledger_rows(caller)
    assert [(r["status"], r["rate_limited"], r["attempt"]) for r in rows] == [
        ("rate_limited", True, 1),
        ("rate_limited", True, 2),
        ("rate_limited", True, 3),
        ("ok", False, 4),
    ]
    assert sum(r["input_tokens"] for r in rows) == fake.total_tokens(status=200)
    assert all(r["input_tokens"] == 0 and float(r["cost_usd"]) == 0 for r in rows[:3])


def test_a_429_slows_every_caller_sharing_the_limit(fake, make_gateway, redis_client, caller):
    gw = make_gateway(fake)
    fake.force_429_next(1, retry_after=30)
    with pytest.raises(RateLimitWait) as err:  # 30 s > max_wait: the task should re-schedule itself
        gw.embed(unique_texts(2), caller=caller)
    assert err.value.countdown >= 29 and fake.count() == 1
    # Another process on the same Redis: refused locally, the provider sees nothing.
    other = Gateway(gw.settings, redis_client=redis_client, key_prefix=gw.limiter._prefix[: -len("rl:")])
    with pytest.raises(RateLimitWait):
        other.embed(unique_texts(2), caller=caller)
    assert fake.count() == 1


def test_5xx_are_retried_with_backoff_then_succeed(fake, make_gateway, caller):
    slept: list[float] = []
    gw = make_gateway(fake, sleep=slept.append)
    fake.fail_next(2, status=503)
    res = gw.chat(MSG, caller=caller)
    assert res.content and [r["status"] for r in fake.requests] == [503, 503, 200]
    assert len(slept) == 2 and all(s > 0 for s in slept)
    assert [r["status"] for r in ledger_rows(caller)] == ["error", "error", "ok"]


def test_5xx_storm_gives_up_after_the_bounded_attempts(fake, make_gateway, caller):
    gw = make_gateway(fake, sleep=lambda s: None)
    fake.fail_next(10, status=502)
    with pytest.raises(ProviderUnavailable) as err:
        gw.embed(unique_texts(2), caller=caller)
    assert "502" in str(err.value) and "4 attempts" in str(err.value) and "\n" not in str(err.value)
    assert fake.count() == 4
    rows = ledger_rows(caller)
    assert len(rows) == 4 and all(r["status"] == "error" for r in rows)


def test_timeouts_are_retried(fake, make_gateway, caller):
    gw = make_gateway(
        fake, ai={"retry": {"timeout_seconds": 0.5, "backoff_base_seconds": 0.01, "max_attempts": 3}}
    )
    fake.hang_next(1, seconds=3)
    res = gw.embed(unique_texts(2), caller=caller)
    assert res.errors == {}
    rows = ledger_rows(caller)
    assert [r["status"] for r in rows] == ["error", "ok"] and "timed out" in rows[0]["error"]


@pytest.mark.parametrize("kind", ["invalid_json", "missing_field"])
def test_malformed_answers_are_clear_errors_never_success(fake, make_gateway, caller, kind):
    gw = make_gateway(fake)
    texts = unique_texts(3)
    fake.malformed_next(1, kind=kind)
    with pytest.raises(MalformedResponse, match="malformed response"):
        gw.embed(texts, caller=caller)
    fake.malformed_next(1, kind=kind)
    with pytest.raises(MalformedResponse):
        gw.chat([{"role": "user", "content": f"hello {caller}"}], caller=caller)
    rows = ledger_rows(caller)
    assert [r["status"] for r in rows] == ["error", "error"]
    assert all("usage unknown" in r["error"] for r in rows)
    # nothing was cached: the next call really asks the provider
    res = gw.embed(texts, caller=caller)
    assert res.cache_hits == 0 and fake.count(status=200) == 3


def test_a_rejected_key_never_appears_in_errors(fake, make_gateway, caller, tmp_path):
    from tests.integration.ai.conftest import write_settings

    bad_key = "sk-proj-Wr0ngKeyAb3dEf6hIj9kLm2nOp5qRs8t"
    settings = write_settings(tmp_path, api_key=bad_key, base_url=fake.base_url)
    gw = make_gateway(fake)
    gw = Gateway(settings, redis_client=gw._redis, key_prefix=gw.limiter._prefix[:-3])
    with pytest.raises(ProviderError) as err:
        gw.chat(MSG, caller=caller)
    assert err.value.status == 401 and "OPENAI_API_KEY" in str(err.value)
    assert bad_key not in str(err.value) and bad_key[-4:] not in str(err.value)
    assert fake.count() == 1  # not retried
    row = ledger_rows(caller)[0]
    assert row["status"] == "error" and bad_key[-4:] not in row["error"]


def test_client_errors_are_not_retried(fake, make_gateway, caller):
    gw = make_gateway(fake)
    with pytest.raises(ProviderError, match="HTTP 404"):
        gw.chat(MSG, caller=caller, model="no-such-model")
    assert fake.count() == 1
