"""Privacy canaries: planted PII and secrets never reach the provider; chat answers get them back."""

from __future__ import annotations

import json

from tests.integration.ai.conftest import ledger_rows

CANARIES = {
    "email": "canary.person@example-corp.com",
    "openai_key": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "card": "4111 1111 1111 1111",
    "phone": "+1 415 555 0142",
}


def _leaks(blob: str) -> list[str]:
    compact = blob.replace(" ", "")
    return [name for name, value in CANARIES.items() if value in blob or value.replace(" ", "") in compact]


def _everything_the_server_saw(fake) -> str:
    return json.dumps(
        [
            {"body": r["body"], "headers": {k: v for k, v in r["headers"].items() if k != "authorization"}}
            for r in fake.requests
        ]
    )


def test_embedding_inputs_are_redacted_before_they_leave(fake, make_gateway, caller):
    gw = make_gateway(fake)
    texts = [
        f"{caller} contact {CANARIES['email']} or {CANARIES['phone']}",
        f"{caller} key={CANARIES['openai_key']} card {CANARIES['card']}",
    ]
    res = gw.embed(texts, caller=caller)
    assert res.errors == {}
    seen = _everything_the_server_saw(fake)
    assert fake.count(status=200) == 1 and _leaks(seen) == []
    assert "[EMAIL_REDACTED]" in seen
    assert _leaks(json.dumps(ledger_rows(caller), default=str)) == []


def test_chat_is_redacted_and_answers_are_restored(fake, make_gateway, caller, redis_client):
    fake.responder = lambda body: (
        "Reply to "
        + " and ".join(m["content"] for m in body["messages"] if isinstance(m.get("content"), str))
    )
    gw = make_gateway(fake)
    messages = [
        {"role": "system", "content": f"Escalate to {CANARIES['email']}."},
        {"role": "user", "content": [{"type": "text", "text": f"{caller}: my card is {CANARIES['card']}"}]},
        {"role": "user", "content": f"call {CANARIES['phone']}, token {CANARIES['openai_key']}"},
    ]
    res = gw.chat(messages, caller=caller)
    seen = _everything_the_server_saw(fake)
    assert _leaks(seen) == [] and "[EMAIL_1]" in seen
    # the answer quoted the placeholders; the caller gets the real values back
    assert CANARIES["email"] in res.content and CANARIES["phone"] in res.content
    assert "[EMAIL_1]" not in res.content
    # the cache holds only the redacted form, and a hit restores for the new caller too
    prefix = gw.limiter._prefix[: -len("rl:")] + "chat:"
    cached = b"".join(redis_client.get(k) for k in redis_client.scan_iter(match=prefix + "*"))
    assert cached and _leaks(cached.decode()) == []
    again = gw.chat(messages, caller=caller)
    assert again.cache_hit and again.content == res.content and fake.count() == 1
    assert _leaks(json.dumps(ledger_rows(caller), default=str)) == []


def test_two_conversations_that_redact_alike_share_a_cached_answer(fake, make_gateway, caller):
    fake.responder = lambda body: "Noted: " + body["messages"][-1]["content"]
    gw = make_gateway(fake)
    a = gw.chat([{"role": "user", "content": f"{caller} write to alice@example.org"}], caller=caller)
    b = gw.chat([{"role": "user", "content": f"{caller} write to bob@example.net"}], caller=caller)
    assert fake.count() == 1 and b.cache_hit
    assert a.content.endswith("alice@example.org") and b.content.endswith("bob@example.net")
