"""Several worker processes share one RPM/TPM limit through Redis: the server sees (almost)
no 429s although the workload is several times the bucket, and the ledger adds up to what
the server counted. The "minute" is scaled to 2 s so the test takes seconds."""

from __future__ import annotations

import json
import multiprocessing
import uuid

from tests.fakes.openai_server import count_tokens
from tests.integration.ai.conftest import FAST_RETRY, ledger_rows, scaled_minute, unique_texts

WINDOW = 2.0
RPM, TPM = 24, 1200  # per 2 s window: 12 requests/s, 600 tokens/s
PROCS = 4


def test_processes_share_one_limit(fake, tmp_path, redis_client):
    fake.rpm, fake.tpm = RPM, TPM
    cfg = tmp_path / "agent_config.json"
    ai = {"rate_limits": {"text-embedding-3-small": {"rpm": RPM, "tpm": TPM}}, "retry": FAST_RETRY}
    cfg.write_text(json.dumps({"ai": ai}))
    caller = f"test.ai.mp.{uuid.uuid4().hex[:8]}"
    prefix = f"tokpulse:test:{uuid.uuid4().hex[:8]}:"
    # per process: 10 calls of 6 texts (~15 tokens each) -> ~90 tokens per request
    work = [[unique_texts(6, words=10) for _ in range(10)] for _ in range(PROCS)]
    total = sum(count_tokens(t) for proc in work for chunk in proc for t in chunk)
    assert total > 3 * TPM and PROCS * 10 > 1.5 * RPM  # far more than one bucket of either

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    with scaled_minute(WINDOW):
        procs = [
            ctx.Process(
                target=_target, args=(str(cfg), fake.base_url, fake.api_key, prefix, WINDOW, caller, w, out)
            )
            for w in work
        ]
        for p in procs:
            p.start()
        results = [out.get(timeout=90) for _ in procs]
        for p in procs:
            p.join(timeout=30)
    for k in redis_client.scan_iter(match=prefix + "*"):
        redis_client.delete(k)

    assert results == [("ok", 60)] * PROCS, results
    limited = fake.count(status=429)
    ok = fake.count(status=200)
    assert ok == PROCS * 10
    assert limited <= 1, f"{limited} requests answered 429"  # 0 in practice; 1 tolerated
    rows = ledger_rows(caller)
    assert len([r for r in rows if r["status"] == "ok"]) == ok
    assert len([r for r in rows if r["rate_limited"]]) == limited
    assert sum(r["input_tokens"] for r in rows) == fake.total_tokens(status=200) == total


def _target(*args):
    from tests.integration.ai._mp_worker import run

    run(*args)
