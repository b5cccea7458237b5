"""FakeOpenAI driven through the real `openai` SDK."""

from __future__ import annotations

import base64
import json
import math
import struct
import threading
import time

import httpx
import openai
import pytest

from tests.fakes import fixtures
from tests.fakes.openai_server import FakeOpenAI, count_tokens, go_duration

fake_openai = fixtures.fake_openai  # the shared fixture (also registered by the lead via pytest_plugins)

EMBED = "text-embedding-3-small"
CHAT = "gpt-4o-mini"


def client(fake: FakeOpenAI, **kwargs) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(api_key=kwargs.pop("api_key", fake.api_key), base_url=fake.base_url, **kwargs)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


# --- embeddings --------------------------------------------------------------------------------


def test_embeddings_default_base64_matches_float_and_usage(fake_openai):
    texts = ["Deploy failed on staging", "latency spike in the EU region"]
    api = client(fake_openai)

    default = api.embeddings.create(model=EMBED, input=texts)  # SDK requests base64 and decodes it
    assert fake_openai.last("/embeddings")["body"]["encoding_format"] == "base64"
    floats = api.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    assert fake_openai.last("/embeddings")["body"]["encoding_format"] == "float"

    expected_tokens = sum(count_tokens(t) for t in texts)
    for response in (default, floats):
        assert response.object == "list" and response.model == EMBED
        assert [d.index for d in response.data] == [0, 1]
        assert response.usage.prompt_tokens == response.usage.total_tokens == expected_tokens
        for item in response.data:
            assert item.object == "embedding" and len(item.embedding) == 1536
            assert math.isclose(sum(x * x for x in item.embedding), 1.0, rel_tol=1e-5)
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]

    record = fake_openai.last("/v1/embeddings")
    assert record["status"] == 200 and record["n_inputs"] == 2 and record["prompt_tokens"] == expected_tokens
    assert record["auth_ok"] is True and record["rate_limited"] is False


def test_embeddings_raw_base64_is_little_endian_float32(fake_openai):
    response = httpx.post(
        f"{fake_openai.base_url}/embeddings",
        headers={"Authorization": f"Bearer {fake_openai.api_key}"},
        json={"model": "text-embedding-3-large", "input": "hello", "encoding_format": "base64"},
    )
    assert response.status_code == 200
    payload = response.json()["data"][0]["embedding"]
    assert isinstance(payload, str)
    raw = base64.b64decode(payload)
    assert len(raw) == 3072 * 4
    vector = struct.unpack("<3072f", raw)
    assert math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-5)


def test_embeddings_are_deterministic_and_similar_texts_are_closer(fake_openai):
    api = client(fake_openai)
    texts = [
        "postgres connection pool exhausted on worker",
        "worker exhausted the postgres connection pool",
        "quarterly marketing newsletter about holiday sales",
    ]
    first = [d.embedding for d in api.embeddings.create(model=EMBED, input=texts).data]
    again = [d.embedding for d in api.embeddings.create(model=EMBED, input=texts).data]
    assert first == again
    related, unrelated = cosine(first[0], first[1]), cosine(first[0], first[2])
    assert related > 0.5
    assert related > unrelated + 0.3
    other_model = api.embeddings.create(model="text-embedding-ada-002", input=texts[0]).data[0].embedding
    assert other_model != first[0]


def test_embeddings_dimensions_and_token_array_input(fake_openai):
    api = client(fake_openai)
    short = api.embeddings.create(model=EMBED, input="hello world", dimensions=256)
    assert len(short.data[0].embedding) == 256
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        api.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=256)
    with pytest.raises(openai.BadRequestError, match="less than or equal to 1536"):
        api.embeddings.create(model=EMBED, input="x", dimensions=4096)

    as_text = api.embeddings.create(model=EMBED, input="hello world")
    as_tokens = api.embeddings.create(model=EMBED, input=[15339, 1917])  # cl100k for "hello world"
    assert as_tokens.usage.prompt_tokens == 2
    assert as_tokens.data[0].embedding == as_text.data[0].embedding


def test_embedding_limits(fake_openai):
    api = client(fake_openai)
    with pytest.raises(openai.BadRequestError) as too_many:
        api.embeddings.create(model=EMBED, input=["x"] * 2049)
    assert too_many.value.status_code == 400 and "2048" in too_many.value.message

    long_text = "word " * 9000
    with pytest.raises(openai.BadRequestError) as too_long:
        api.embeddings.create(model=EMBED, input=["fine", long_text])
    n = count_tokens(long_text)
    assert (
        f"maximum context length is 8192 tokens, however you requested {n} tokens" in too_long.value.message
    )

    per_input = " ".join(["word"] * 8000)  # exactly 8000 tokens: individually fine, 38 of them exceed 300k
    assert count_tokens(per_input) == 8000
    with pytest.raises(openai.BadRequestError) as too_big:
        api.embeddings.create(model=EMBED, input=[per_input] * 38)
    assert too_big.value.code == "max_tokens_per_request"
    assert "Requested 304000 tokens, max 300000 tokens per request" in too_big.value.message

    with pytest.raises(openai.BadRequestError):
        api.embeddings.create(model=EMBED, input="")
    with pytest.raises(openai.BadRequestError):
        api.embeddings.create(model=EMBED, input=["ok", ""])
    with pytest.raises(openai.NotFoundError) as unknown:
        api.embeddings.create(model="text-embedding-4-imaginary", input="x")
    assert unknown.value.code == "model_not_found"

    assert fake_openai.count(path="/v1/embeddings", status=400) == 5 and fake_openai.count(status=404) == 1
    assert fake_openai.count(status=200) == 0
    assert fake_openai.total_tokens() == 0


# --- chat completions --------------------------------------------------------------------------


def test_chat_completion_shape_and_usage(fake_openai):
    messages = [
        {"role": "system", "content": "You triage deploy failures."},
        {"role": "user", "content": "The canary failed three times in a row, what next?"},
    ]
    result = client(fake_openai).chat.completions.create(model=CHAT, messages=messages)

    assert result.id.startswith("chatcmpl-") and len(result.id) > 20
    assert result.object == "chat.completion" and result.model == CHAT
    assert abs(result.created - time.time()) < 60
    assert result.system_fingerprint and result.system_fingerprint.startswith("fp_")
    choice = result.choices[0]
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert choice.message.role == "assistant" and choice.message.refusal is None
    assert choice.message.content

    expected_prompt = 3 + sum(3 + count_tokens(m["role"]) + count_tokens(m["content"]) for m in messages)
    assert result.usage.prompt_tokens == expected_prompt
    assert result.usage.completion_tokens == count_tokens(choice.message.content)
    assert result.usage.total_tokens == expected_prompt + result.usage.completion_tokens
    assert fake_openai.total_tokens() == result.usage.total_tokens


def test_chat_default_reply_is_deterministic_and_quotes_no_input(fake_openai):
    secret = "The quarterly incident summary mentions cluster kappa-nine and the rollback of build 4711 " * 3
    api = client(fake_openai)
    messages = [{"role": "user", "content": secret}]
    first = api.chat.completions.create(model=CHAT, messages=messages).choices[0].message.content
    second = api.chat.completions.create(model=CHAT, messages=messages).choices[0].message.content
    assert first == second
    assert not any(secret[i : i + 41] in first for i in range(len(secret) - 40))


def test_chat_json_mode_and_custom_responder(fake_openai):
    api = client(fake_openai)
    result = api.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Answer in JSON please"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(result.choices[0].message.content), dict)

    seen = []
    fake_openai.responder = lambda request: seen.append(request) or "custom answer"
    result = api.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=50
    )
    assert result.choices[0].message.content == "custom answer"
    assert seen[0]["max_tokens"] == 50 and seen[0]["messages"][0]["content"] == "hi"

    fake_openai.responder = lambda request: "one two three four five six seven"
    cut = api.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3


def test_chat_streaming(fake_openai):
    fake_openai.responder = lambda request: "streamed reply text"
    stream = client(fake_openai).chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed reply text"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == count_tokens(text)


def test_models_list(fake_openai):
    ids = {m.id for m in client(fake_openai).models.list()}
    assert {EMBED, "text-embedding-3-large", "text-embedding-ada-002", CHAT} <= ids


# --- auth, faults ------------------------------------------------------------------------------


def test_wrong_or_missing_key_is_401(fake_openai):
    with pytest.raises(openai.AuthenticationError) as exc:
        client(fake_openai, api_key="sk-not-the-right-one-wxyz").embeddings.create(model=EMBED, input="x")
    assert exc.value.status_code == 401 and exc.value.code == "invalid_api_key"
    assert exc.value.body["type"] == "invalid_request_error" and exc.value.body["param"] is None
    assert "Incorrect API key provided: sk-...wxyz." in exc.value.message
    assert fake_openai.last()["auth_ok"] is False

    bare = httpx.post(f"{fake_openai.base_url}/embeddings", json={"model": EMBED, "input": "x"})
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "invalid_api_key"
    assert bare.headers["x-request-id"].startswith("req_")
    assert fake_openai.count(status=401) == 2 and fake_openai.total_tokens(status=None) == 0


def test_server_error_then_success_with_one_retry(fake_openai):
    fake_openai.fail_next(1, status=500)
    result = client(fake_openai, max_retries=1).embeddings.create(model=EMBED, input="retry me")
    assert len(result.data) == 1
    assert [r["status"] for r in fake_openai.requests] == [500, 200]
    assert fake_openai.requests[0]["fault"] == "fail"

    fake_openai.fail_next(2, status=503)
    with pytest.raises(openai.InternalServerError) as exc:
        client(fake_openai).embeddings.create(model=EMBED, input="x")
    assert exc.value.status_code == 503
    fake_openai.clear_faults()
    assert client(fake_openai).embeddings.create(model=EMBED, input="x").data


def test_malformed_and_hang(fake_openai):
    api = client(fake_openai)
    fake_openai.malformed_next(1)
    with pytest.raises(json.JSONDecodeError):
        api.embeddings.create(model=EMBED, input="x")
    fake_openai.malformed_next(1, kind="missing_field")
    with pytest.raises(ValueError, match="No embedding data"):
        api.embeddings.create(model=EMBED, input="x")

    fake_openai.hang_next(1, seconds=0.4)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        api.with_options(timeout=0.15).embeddings.create(model=EMBED, input="x")
    assert time.monotonic() - started < 0.35
    deadline = time.monotonic() + 3
    while fake_openai.last()["status"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_openai.last()["status"] == 499 and fake_openai.last()["fault"] == "hang"
    assert api.embeddings.create(model=EMBED, input="x").data  # the next one is normal


def test_latency(fake_openai):
    fake_openai.latency = 0.15
    started = time.monotonic()
    client(fake_openai).models.list()
    assert time.monotonic() - started >= 0.15
    assert int(fake_openai.last()["duration"] * 1000) >= 150


# --- rate limits -------------------------------------------------------------------------------


def test_rpm_is_enforced_across_sequential_calls(fake_openai):
    fake_openai.rpm = 3
    api = client(fake_openai)
    remaining = []
    for _ in range(3):
        raw = api.embeddings.with_raw_response.create(model=EMBED, input="ping")
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [2, 1, 0]

    with pytest.raises(openai.RateLimitError) as exc:
        api.embeddings.create(model=EMBED, input="ping")
    err = exc.value
    headers = err.response.headers
    assert err.status_code == 429 and err.code == "rate_limit_exceeded" and err.body["type"] == "requests"
    assert (
        "Rate limit reached for text-embedding-3-small in organization org-fake on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in" in err.message
    )
    wait = float(headers["retry-after-ms"]) / 1000
    assert 15 < wait <= 20  # one request refills in 60/3 s
    assert int(headers["retry-after"]) == math.ceil(wait)
    for name in (
        "limit-requests",
        "limit-tokens",
        "remaining-requests",
        "remaining-tokens",
        "reset-requests",
        "reset-tokens",
    ):
        assert f"x-ratelimit-{name}" in headers
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-request-id"].startswith("req_") and "openai-processing-ms" in headers

    # limits are per model: chat still has its own bucket
    assert client(fake_openai).chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "x"}]
    )
    assert fake_openai.count(status=429) == 1 and fake_openai.requests[3]["rate_limited"] is True
    fake_openai.rpm = None
    assert api.embeddings.create(model=EMBED, input="ping").data


def test_tpm_is_enforced_with_token_estimate(fake_openai):
    fake_openai.tpm = 60
    api = client(fake_openai)
    text = " ".join(["alpha beta gamma delta"] * 5)  # 20 tokens
    assert count_tokens(text) == 20
    api.embeddings.create(model=EMBED, input=[text, text])  # 40 of 60
    with pytest.raises(openai.RateLimitError) as exc:
        api.embeddings.create(model=EMBED, input=[text, text])
    assert exc.value.body["type"] == "tokens"
    assert "on tokens per min (TPM): Limit 60, Used 40, Requested 40." in exc.value.message
    assert 19 < float(exc.value.response.headers["retry-after-ms"]) / 1000 <= 20

    # chat: prompt tokens + max_tokens count up-front, like OpenAI's estimate
    fake_openai.tpm = 100
    with pytest.raises(openai.RateLimitError, match="Request too large"):
        api.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=200)


def test_forced_429_is_honoured_by_sdk_retry(fake_openai):
    fake_openai.force_429_next(1, retry_after=0.05)
    started = time.monotonic()
    result = client(fake_openai, max_retries=1).embeddings.create(model=EMBED, input="x")
    assert result.data and time.monotonic() - started < 0.4  # slept retry-after-ms, not the 0.5 s backoff
    assert [r["status"] for r in fake_openai.requests] == [429, 200]
    assert fake_openai.requests[0]["fault"] == "force_429"


def test_rpm_is_thread_safe_under_concurrency(fake_openai):
    fake_openai.rpm = 5
    statuses: list[int] = []
    lock = threading.Lock()
    api = client(fake_openai)  # the SDK client is thread-safe; one connection pool for all threads

    def call() -> None:
        try:
            api.embeddings.create(model=EMBED, input="concurrent", encoding_format="float")
            status = 200
        except openai.RateLimitError:
            status = 429
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(statuses) == [200] * 5 + [429] * 5
    assert fake_openai.count(status=200) == 5


def test_records_and_reset(fake_openai):
    api = client(fake_openai)
    api.embeddings.create(model=EMBED, input=["a b", "c"])
    api.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hello"}])
    embed_rec, chat_rec = fake_openai.requests
    assert embed_rec["model"] == EMBED and embed_rec["body"]["input"] == ["a b", "c"]
    assert chat_rec["completion_tokens"] > 0
    assert fake_openai.total_tokens() == embed_rec["total_tokens"] + chat_rec["total_tokens"]
    assert fake_openai.count(path="/v1/chat/completions") == 1 and fake_openai.count(method="GET") == 0
    fake_openai.reset()
    assert fake_openai.requests == [] and fake_openai.total_tokens() == 0


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (0.12, "120ms"),
        (1, "1s"),
        (1.234, "1.234s"),
        (360, "6m0s"),
        (86.4, "1m26.4s"),
        (3600, "1h0m0s"),
    ],
)
def test_go_duration(seconds, expected):
    assert go_duration(seconds) == expected
