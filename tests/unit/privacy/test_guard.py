"""The guard's API: caching, redact_object, findings, reversible sessions, custom patterns,
limits and bad input."""

from __future__ import annotations

import copy
import pickle
import re
import threading
from collections import namedtuple

import pytest

from tests.unit.privacy.samples import KEYS
from tokpulse.privacy import (
    Findings,
    PrivacyGuard,
    PrivacyInputError,
    get_privacy_guard,
    validate_custom_patterns,
)
from tokpulse.privacy import scanner as scanner_mod
from tokpulse.settings import ConfigError, CustomPattern, Privacy

MIXED = (
    f"Contact john@example.com or +1 415 555 2671, card 4111 1111 1111 1111, IBAN DE89370400440532013000,\n"
    f"ssn 123-45-6789, key {KEYS['github_classic']}, db postgres://app:s3cr3t@db/x, password=hunter22\n"
)


@pytest.fixture(scope="module")
def guard() -> PrivacyGuard:
    return get_privacy_guard()


def test_cached_per_mode_and_config():
    assert get_privacy_guard() is get_privacy_guard(False, Privacy())
    assert get_privacy_guard(True) is get_privacy_guard(True)
    assert get_privacy_guard(True) is not get_privacy_guard(False)
    assert get_privacy_guard(False, Privacy(strict_mode=True)).strict
    custom = Privacy(custom_patterns=[CustomPattern(name="ticket", regex=r"TCK-\d{6}")])
    assert get_privacy_guard(False, custom) is get_privacy_guard(
        False, Privacy.model_validate(custom.model_dump())
    )
    assert get_privacy_guard(False, custom) is not get_privacy_guard()


def test_uses_hyperscan(guard):
    assert guard.engine == "hyperscan"


def test_python_fallback_engine_gives_the_same_result(monkeypatch, guard):
    monkeypatch.setattr(scanner_mod, "_hs", None)
    slow = PrivacyGuard(False, Privacy())
    assert slow.engine == "re"
    assert slow.redact(MIXED) == guard.redact(MIXED)


def test_mixed_text(guard):
    out, findings = guard.redact_with_findings(MIXED)
    assert out == (
        "Contact [EMAIL_REDACTED] or [PHONE_REDACTED], card [CREDIT_CARD_REDACTED], IBAN [IBAN_REDACTED],\n"
        "ssn [SSN_REDACTED], key [API_KEY_REDACTED], db postgres://[URL_CREDENTIALS_REDACTED]@db/x, "
        "password=[SECRET_REDACTED]\n"
    )
    assert findings.as_dict() == {
        "api_key": 1,
        "credit_card": 1,
        "email": 1,
        "iban": 1,
        "phone": 1,
        "secret": 1,
        "ssn": 1,
        "url_credentials": 1,
    }
    assert findings.total == 8 and findings.by_detector["github_token"] == 1
    assert guard.scan(MIXED).as_dict() == findings.as_dict()


def test_findings_never_hold_values(guard):
    _, findings = guard.redact_with_findings(MIXED)
    blob = repr(findings) + repr(findings.as_dict())
    for value in ("john@example.com", "4111", "hunter22", KEYS["github_classic"], "s3cr3t"):
        assert value not in blob
    assert not Findings() and Findings().as_dict() == {}


def test_unchanged_text_is_returned_as_is(guard):
    text = "nothing to see here " * 100
    assert guard.redact(text) is text


def test_bytes_are_decoded_with_replacement(guard):
    assert guard.redact(b"bad \xff\xfe bytes john@example.com") == "bad \ufffd\ufffd bytes [EMAIL_REDACTED]"


def test_non_ascii_text_keeps_offsets_right(guard):
    text = "Grüße von Jürgen — mail jürgen.müller@example.de, Tel. +49 30 12345678 ✓"
    assert guard.redact(text) == "Grüße von Jürgen — mail [EMAIL_REDACTED], Tel. [PHONE_REDACTED] ✓"
    located = guard.locate(text)
    assert [text[m.start : m.end] for m in located] == ["jürgen.müller@example.de", "+49 30 12345678"]


def test_lone_surrogates_do_not_crash(guard):
    assert guard.redact("x\ud800 john@example.com") == "x\ud800 [EMAIL_REDACTED]"


def test_redact_rejects_non_text(guard):
    with pytest.raises(PrivacyInputError, match="expects text"):
        guard.redact(123)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# redact_object


def test_spec_redact_object(guard):
    obj = {"email": "user@test.com", "password": "secret123", "apiKey": "sk-abc123..."}
    assert guard.redact_object(obj) == {
        "email": "[REDACTED]",
        "password": "[REDACTED]",
        "apiKey": "[REDACTED]",
    }


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refreshToken",
        "apiKey",
        "api_key",
        "API-KEY",
        "x-api-key",
        "ApiKey",
        "apikey",
        "Authorization",
        "proxy-authorization",
        "email",
        "user_email",
        "emailAddress",
        "phone",
        "phone_number",
        "ssn",
        "card",
        "cardNumber",
        "card_cvv",
        "credit_card",
        "cookie",
        "Set-Cookie",
        "private_key",
        "basic_auth",
        "pin",
    ],
)
def test_sensitive_keys(guard, key):
    assert guard.redact_object({key: "value-123"}) == {key: "[REDACTED]"}


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "prompt_tokens",
        "token_count",
        "token_type",
        "tokenizer",
        "cardinality",
        "key",
        "passed",
        "description",
        "id",
        "author",
    ],
)
def test_non_sensitive_keys(guard, key):
    assert guard.redact_object({key: "value-123"}) == {key: "value-123"}


def test_configured_sensitive_keys():
    g = get_privacy_guard(False, Privacy(sensitive_keys=["customer_name", "dob"]))
    assert g.redact_object(
        {"customerName": "Ann", "customer-name": "Bo", "user_dob": "1990-01-01", "name": "x"}
    ) == {"customerName": "[REDACTED]", "customer-name": "[REDACTED]", "user_dob": "[REDACTED]", "name": "x"}


def test_redact_object_nested_and_never_mutates(guard):
    Point = namedtuple("Point", "label value")
    obj = {
        "user": {"email": "a@b.com", "profile": {"bio": "mail me: john@example.com", "verified": True}},
        "items": [{"note": "card 4111111111111111"}, ("x@y.io", 42, None), Point("tel", "+1 415 555 2671")],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "cost": 0.01},
        "tags": {"ops", "mail a@b.com"},
        "raw": b"ghp token " + KEYS["github_classic"].encode(),
        "card_number": 4111111111111111,
        "big": 4111111111111111,
        "epoch_ms": 1716239022123,
        "token": None,
        "has_password": False,
    }
    before = copy.deepcopy(obj)
    out = guard.redact_object(obj)
    assert obj == before
    assert out["user"] == {
        "email": "[REDACTED]",
        "profile": {"bio": "mail me: [EMAIL_REDACTED]", "verified": True},
    }
    assert out["items"][0] == {"note": "card [CREDIT_CARD_REDACTED]"}
    assert out["items"][1] == ("[EMAIL_REDACTED]", 42, None) and type(out["items"][1]) is tuple
    assert out["items"][2] == Point("tel", "[PHONE_REDACTED]") and type(out["items"][2]) is Point
    assert out["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "cost": 0.01}
    assert out["tags"] == {"ops", "mail [EMAIL_REDACTED]"}
    assert out["raw"] == b"ghp token [API_KEY_REDACTED]"
    assert out["card_number"] == "[REDACTED]" and out["big"] == "[CREDIT_CARD_REDACTED]"
    assert out["epoch_ms"] == 1716239022123
    assert out["token"] is None and out["has_password"] is False


def test_redact_object_scalars_and_lists(guard):
    assert guard.redact_object("john@example.com") == "[EMAIL_REDACTED]"
    assert guard.redact_object(["a@b.com", "ok", 3]) == ["[EMAIL_REDACTED]", "ok", 3]
    assert guard.redact_object(None) is None


def test_dict_keys_are_redacted_without_collisions(guard):
    out = guard.redact_object({"a@x.com": 1, "b@y.org": 2, "plain": 3})
    assert out == {"[EMAIL_REDACTED]": 1, "[EMAIL_REDACTED]#2": 2, "plain": 3}


def test_redact_object_findings(guard):
    f = Findings()
    guard.redact_object({"password": "x", "note": "a@b.com and c@d.com"}, findings=f)
    assert f.as_dict() == {"email": 2, "sensitive_key": 1}


def test_cycle_detected(guard):
    a: dict = {"b": {}}
    a["b"]["a"] = a
    with pytest.raises(PrivacyInputError, match=r"^cycle detected at \$\.b\.a$"):
        guard.redact_object(a)
    lst: list = [1]
    lst.append(lst)
    with pytest.raises(PrivacyInputError, match=r"cycle detected at \$\[1\]"):
        guard.redact_object(lst)


def test_shared_references_are_not_cycles(guard):
    shared = {"email": "a@b.com"}
    assert guard.redact_object({"x": shared, "y": [shared, shared]}) == {
        "x": {"email": "[REDACTED]"},
        "y": [{"email": "[REDACTED]"}, {"email": "[REDACTED]"}],
    }


def test_depth_limit():
    g = get_privacy_guard(False, Privacy(max_depth=5))
    ok: list = ["a@b.com"]
    for _ in range(4):
        ok = [ok]
    assert g.redact_object(ok) == [[[[["[EMAIL_REDACTED]"]]]]]
    with pytest.raises(PrivacyInputError, match=r"^nesting deeper than 5 levels \(privacy\.max_depth\)$"):
        g.redact_object([ok])


def test_deep_nesting_beyond_the_recursion_limit_is_handled():
    g = get_privacy_guard(False, Privacy(max_depth=10_000))
    deep: list = ["a@b.com"]
    for _ in range(5000):
        deep = [deep]
    out = g.redact_object(deep)
    for _ in range(5000):
        out = out[0]
    assert out == ["[EMAIL_REDACTED]"]


def test_size_limit():
    g = get_privacy_guard(False, Privacy(max_input_bytes=1024))
    assert g.redact("x" * 1024) == "x" * 1024
    with pytest.raises(
        PrivacyInputError, match=r"^input is 2\.0 KB, over the 1\.0 KB limit \(privacy\.max_input_bytes\)$"
    ):
        g.redact("x" * 2048)
    with pytest.raises(PrivacyInputError, match="max_input_bytes"):
        g.redact_object(["x" * 600, "y" * 600])


def test_size_message_in_megabytes():
    g = get_privacy_guard(False, Privacy(max_input_bytes=1024 * 1024))
    with pytest.raises(PrivacyInputError, match=r"^input is 1\.5 MB, over the 1\.0 MB limit"):
        g.redact(b"x" * (1536 * 1024))


def test_json_only_mode(guard):
    with pytest.raises(PrivacyInputError, match=r"^value of type bytes at \$\.x is not JSON$"):
        guard.redact_object({"x": b"raw"}, json_only=True)
    with pytest.raises(PrivacyInputError, match=r"^key of type int at \$\[1\] is not a string$"):
        guard.redact_object({"a": 1, 1: 2}, json_only=True)
    with pytest.raises(PrivacyInputError, match=r"value of type set at \$\.a\[0\] is not JSON"):
        guard.redact_object({"a": [{1}]}, json_only=True)


def test_unsupported_objects_are_refused_in_process(guard):
    class Thing:
        pass

    with pytest.raises(PrivacyInputError, match=r"^value of type Thing at \$\.t is not supported"):
        guard.redact_object({"t": Thing()})


# ---------------------------------------------------------------------------------------------
# Reversible sessions


def test_reversible_round_trip(guard):
    session = guard.reversible()
    text = f"mail a@b.com, then a@b.com again and c@d.org; key {KEYS['npm']}; call +1 415 555 2671"
    red = session.redact(text)
    assert red == "mail [EMAIL_1], then [EMAIL_1] again and [EMAIL_2]; key [API_KEY_1]; call [PHONE_1]"
    answer = "I wrote to [EMAIL_2] and [EMAIL_1]; [PHONE_1] did not answer; [EMAIL_9] is unknown."
    assert (
        session.restore(answer)
        == "I wrote to c@d.org and a@b.com; +1 415 555 2671 did not answer; [EMAIL_9] is unknown."
    )
    assert session.restore(red) == text
    # Stable across calls within the session, fresh in a new one.
    assert session.redact("again c@d.org") == "again [EMAIL_2]"
    assert guard.reversible().redact("again c@d.org") == "again [EMAIL_1]"


def test_reversible_objects_and_privacy_of_the_mapping(guard):
    session = guard.reversible()
    out = session.redact_object({"password": "hunter22", "note": "a@b.com"})
    assert out == {"password": "[REDACTED_1]", "note": "[EMAIL_1]"}
    assert session.restore_object(out) == {"password": "hunter22", "note": "a@b.com"}
    assert "hunter22" not in repr(session)
    with pytest.raises(TypeError):
        pickle.dumps(session)


def test_reversible_placeholders_are_idempotent(guard):
    session = guard.reversible()
    red = session.redact("a@b.com and 4111 1111 1111 1111")
    assert session.redact(red) == red and guard.redact(red) == red


# ---------------------------------------------------------------------------------------------
# Custom patterns


def _custom(*patterns: tuple[str, str, str | None]) -> Privacy:
    return Privacy(custom_patterns=[CustomPattern(name=n, regex=r, placeholder=p) for n, r, p in patterns])


def test_custom_patterns():
    g = get_privacy_guard(
        False, _custom(("employee_id", r"EMP-\d{6}", None), ("ticket", r"TCK-[A-Z]{3}\d+", "<TICKET>"))
    )
    text = "EMP-123456 opened TCK-ABC42 for jürgen@example.de (EMP-654321)"
    out, findings = g.redact_with_findings(text)
    assert out == "[EMPLOYEE_ID_REDACTED] opened <TICKET> for [EMAIL_REDACTED] ([EMPLOYEE_ID_REDACTED])"
    assert findings.as_dict() == {"email": 1, "employee_id": 2, "ticket": 1}
    assert g.redact(out) == out
    assert g.reversible().redact("EMP-123456 and EMP-123456") == "[EMPLOYEE_ID_1] and [EMPLOYEE_ID_1]"


def test_custom_pattern_hyperscan_cannot_compile_still_runs():
    # A backreference: Hyperscan can't take it even as a prefilter, so it always runs in Python.
    g = get_privacy_guard(False, _custom(("twice", r"\b(\w{3})-\1\b", None)))
    assert g.redact("codes abc-abc and abc-abd") == "codes [TWICE_REDACTED] and abc-abd"


def test_custom_pattern_overlapping_a_placeholder_keeps_idempotence():
    g = get_privacy_guard(False, _custom(("caps", r"[A-Z_]{6,}", "[CAPS]")))
    once = g.redact("mail john@example.com LOUDWORD")
    assert once == "mail [EMAIL_REDACTED] [CAPS]"
    assert g.redact(once) == once


@pytest.mark.parametrize(
    "pattern,message",
    [
        (("empty", r"x*", None), "can match an empty string"),
        (("spaced", r"EMP-\d+", "[EMP ID]"), "must look like [NAME]"),
        (("self", r"\[SELF\]", "[SELF]"), "is matched by the pattern 'self' itself"),
    ],
)
def test_custom_pattern_config_errors(pattern, message):
    cfg = _custom(("ok", r"OK-\d+", None), pattern)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        validate_custom_patterns(cfg)
    assert err.value.key == "agent_config.json: privacy.custom_patterns[1]"
    assert pattern[0] in str(err.value)
    with pytest.raises(ConfigError):
        get_privacy_guard(False, cfg)


def test_invalid_regex_is_rejected_by_settings():
    with pytest.raises(ValueError, match="not a valid regex"):
        CustomPattern(name="bad", regex="(unclosed")


# ---------------------------------------------------------------------------------------------


def test_thread_safe(guard):
    expected = guard.redact(MIXED)
    results: list[str] = []

    def work() -> None:
        for _ in range(50):
            results.append(guard.redact(MIXED))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200 and set(results) == {expected}
