"""The `redaction` queue's plain job functions and `tokpulse redact`."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import pytest

from tokpulse.privacy import PrivacyInputError, jobs
from tokpulse.privacy.cli import blocks, cmd_redact
from tokpulse.settings import AgentConfig, CustomPattern, Privacy, Settings


@pytest.fixture(autouse=True)
def _privacy_config():
    jobs.set_privacy_config(Privacy(custom_patterns=[CustomPattern(name="employee_id", regex=r"EMP-\d{6}")]))
    yield
    jobs.set_privacy_config(None)


def test_redact_text_job():
    assert jobs.redact_text_job("Contact john@example.com") == "Contact [EMAIL_REDACTED]"
    assert jobs.redact_text_job("badge EMP-123456") == "badge [EMPLOYEE_ID_REDACTED]"  # custom patterns apply
    assert jobs.redact_text_job("from 10.1.2.3", strict=True) == "from [IP_ADDRESS_REDACTED]"


def test_redact_object_job():
    out = jobs.redact_object_job({"email": "a@b.com", "note": "card 4111 1111 1111 1111", "n": 3, "ok": True})
    assert out == {"email": "[REDACTED]", "note": "card [CREDIT_CARD_REDACTED]", "n": 3, "ok": True}


def test_redact_batch_job_keeps_length_and_order():
    items = ["mail a@b.com", "nothing here", {"password": "x"}, ["EMP-123456"], None, 7]
    assert jobs.redact_batch_job(items) == [
        "mail [EMAIL_REDACTED]",
        "nothing here",
        {"password": "[REDACTED]"},
        ["[EMPLOYEE_ID_REDACTED]"],
        None,
        7,
    ]


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: jobs.redact_text_job(42), "redact_text expects a string, got int"),
        (lambda: jobs.redact_batch_job("not a list"), "redact_batch expects a list, got str"),
        (lambda: jobs.redact_batch_job(["ok", {"x": b"raw"}]), r"value of type bytes at $[1].x is not JSON"),
        (lambda: jobs.redact_object_job({"a": {1, 2}}), r"value of type set at $.a is not JSON"),
        (lambda: jobs.redact_object_job({1: "x"}), "key of type int at $[1] is not a string"),
        (lambda: jobs.redact_text_job("x", strict="yes"), "strict must be true or false, got str"),
    ],
)
def test_jobs_refuse_bad_input_with_one_line(call, message):
    with pytest.raises(PrivacyInputError) as err:
        call()
    assert str(err.value) == message


def test_jobs_refuse_oversized_and_deep_input():
    jobs.set_privacy_config(Privacy(max_input_bytes=1024, max_depth=3))
    with pytest.raises(PrivacyInputError, match="over the 1.0 KB limit"):
        jobs.redact_text_job("x" * 5000)
    with pytest.raises(PrivacyInputError, match="nesting deeper than 3 levels"):
        jobs.redact_object_job([[[["deep"]]]])
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(PrivacyInputError, match="cycle detected"):
        jobs.redact_batch_job([cyclic])


def test_config_is_read_from_settings_once(monkeypatch):
    calls = []

    class FakeSettings:
        class agent:  # noqa: N801 - mimics Settings.agent
            privacy = Privacy(sensitive_keys=["nickname"])

    def fake_load():
        calls.append(1)
        return FakeSettings

    jobs.set_privacy_config(None)
    monkeypatch.setattr(jobs, "load_settings", fake_load)
    assert jobs.redact_object_job({"nickname": "bob"}) == {"nickname": "[REDACTED]"}
    assert jobs.redact_object_job({"nickname": "al"}) == {"nickname": "[REDACTED]"}
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------------
# CLI


def _settings(privacy: Privacy | None = None) -> Settings:
    return Settings(
        home=Path("/tmp"),
        agent_config_path=Path("/tmp/agent_config.json"),
        agent=AgentConfig(privacy=privacy or Privacy()),
    )


class _Stdin:
    def __init__(self, data: bytes):
        self.buffer = io.BytesIO(data)


def _run(monkeypatch, data: bytes, *, file=None, json_mode=False, strict=False, privacy=None):
    out, err = io.BytesIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdin", _Stdin(data))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="utf-8"))
    monkeypatch.setattr(sys, "stderr", err)
    args = argparse.Namespace(strict=strict, json=json_mode, file=file)
    rc = cmd_redact(args, _settings(privacy))
    sys.stdout.flush()
    return rc, out.getvalue().decode("utf-8"), err.getvalue()


def test_cli_text_from_stdin(monkeypatch):
    rc, out, err = _run(monkeypatch, b"Contact john@example.com\npassword=hunter22\n")
    assert (rc, out, err) == (0, "Contact [EMAIL_REDACTED]\npassword=[SECRET_REDACTED]\n", "")


def test_cli_undecodable_bytes_are_replaced(monkeypatch):
    rc, out, _ = _run(monkeypatch, b"bad \xff\xfe mail a@b.com")
    assert rc == 0 and out == "bad \ufffd\ufffd mail [EMAIL_REDACTED]"


def test_cli_file_and_strict(monkeypatch, tmp_path):
    f = tmp_path / "in.log"
    f.write_bytes(b"client 203.0.113.9 mail a@b.com")
    assert _run(monkeypatch, b"", file=str(f))[1] == "client 203.0.113.9 mail [EMAIL_REDACTED]"
    assert (
        _run(monkeypatch, b"", file=str(f), strict=True)[1]
        == "client [IP_ADDRESS_REDACTED] mail [EMAIL_REDACTED]"
    )


def test_cli_json_list_of_strings(monkeypatch):
    doc = ["Contact john@example.com", "nothing", "card 4111 1111 1111 1111"]
    rc, out, _ = _run(monkeypatch, json.dumps(doc).encode(), json_mode=True)
    assert rc == 0
    assert json.loads(out) == ["Contact [EMAIL_REDACTED]", "nothing", "card [CREDIT_CARD_REDACTED]"]


def test_cli_json_object_keeps_unicode(monkeypatch):
    rc, out, _ = _run(monkeypatch, '{"name": "Jürgen", "email": "j@x.de"}'.encode(), json_mode=True)
    assert rc == 0 and out == '{"name": "Jürgen", "email": "[REDACTED]"}\n'


@pytest.mark.parametrize(
    "data,message",
    [
        (b'{"a": ', "tokpulse redact: invalid JSON at line 1 column 7: Expecting value\n"),
        (b"[1,\n 2,,]", "tokpulse redact: invalid JSON at line 2 column 4: Expecting value\n"),
        (b"[" * 5000 + b"]" * 5000, "tokpulse redact: nesting deeper than 100 levels (privacy.max_depth)\n"),
        (b"[" * 150 + b"]" * 150, "tokpulse redact: nesting deeper than 100 levels (privacy.max_depth)\n"),
    ],
)
def test_cli_json_errors(monkeypatch, data, message):
    rc, out, err = _run(monkeypatch, data, json_mode=True)
    assert (rc, out, err) == (1, "", message)


def test_cli_refuses_oversized_input(monkeypatch, tmp_path):
    small = Privacy(max_input_bytes=1024)
    rc, out, err = _run(monkeypatch, b"x" * 3000, privacy=small)
    assert (rc, out) == (1, "")
    assert err == "tokpulse redact: input is 2.9 KB, over the 1.0 KB limit (privacy.max_input_bytes)\n"
    f = tmp_path / "big.txt"
    f.write_bytes(b"y" * 4096)
    rc, out, err = _run(monkeypatch, b"", file=str(f), privacy=small)
    assert (rc, out) == (1, "") and "4.0 KB, over the 1.0 KB limit" in err


def test_cli_missing_file(monkeypatch, tmp_path):
    rc, out, err = _run(monkeypatch, b"", file=str(tmp_path / "nope.txt"))
    assert rc == 1 and out == "" and err.startswith("tokpulse redact: cannot read ") and "No such file" in err


def test_blocks_are_line_aligned_and_keep_pem_whole():
    pem = "-----BEGIN PRIVATE KEY-----\n" + "QUJD\n" * 50 + "-----END PRIVATE KEY-----\n"
    text = "line a@b.com\n" * 30 + pem + "tail\n" * 30
    parts = blocks(text, size=200)
    assert "".join(text[s:e] for s, e in parts) == text
    assert all(text[e - 1] == "\n" for s, e in parts[:-1])
    assert any(pem in text[s:e] for s, e in parts)


def test_cli_large_text_in_blocks_matches_one_pass(monkeypatch):
    import tokpulse.privacy.cli as cli_mod
    from tokpulse.privacy import get_privacy_guard

    monkeypatch.setattr(cli_mod, "BLOCK_CHARS", 500)
    seen: list[int] = []
    real = cli_mod.blocks
    monkeypatch.setattr(cli_mod, "blocks", lambda text, size: seen.append(size) or real(text, size))
    text = ("user john@example.com card 4111 1111 1111 1111\n" * 40).encode()
    rc, out, _ = _run(monkeypatch, text)
    assert seen == [500] and len(real(text.decode(), 500)) > 3
    assert rc == 0 and out == get_privacy_guard().redact(text.decode())
