"""Embeddings end to end: real worker processes, jobs sent by name from a bare client, a
pool process SIGKILLed in the middle of a provider call, and `tokpulse up` serving the
search API with tokens created by the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
import uuid

import psutil
import pytest

from tests.conftest import PYTHON, ROOT, client_app, wait_for
from workers import db

pytestmark = pytest.mark.e2e


def _locked_pending(job_id: str) -> bool:
    """True while the job's chunks are pending and held by a drainer (mid-batch)."""
    with db.transaction() as cur:
        cur.execute("SELECT count(*) FROM ai_embedding_queue WHERE job_id = %s AND status = 'pending'", (job_id,))
        pending = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM (SELECT 1 FROM ai_embedding_queue WHERE job_id = %s AND status = 'pending' "
                    "FOR UPDATE SKIP LOCKED) s", (job_id,))
        free = cur.fetchone()[0]
    return pending > 0 and free == 0


def _stored(namespace: str) -> tuple[int, int]:
    with db.transaction() as cur:
        cur.execute("SELECT count(*), count(DISTINCT content_hash) FROM ai_embeddings WHERE namespace = %s",
                    (namespace,))
        return cur.fetchone()


def test_a_worker_killed_mid_batch_redoes_its_chunks_without_duplicates(
    start_worker, fake_openai, redis_url, clean_queues
):
    env = {"OPENAI_API_KEY": fake_openai.api_key, "OPENAI_BASE_URL": fake_openai.base_url}
    worker = start_worker("embeddings", concurrency=1, env=env)
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex
    docs = [{"text": f"# Doc {i} {tag}\n\nParagraph {i} about release trains and canaries {tag}.",
             "source": f"doc{i}.md"} for i in range(6)]
    fake_openai.hang_next(1, seconds=30)  # the first embeddings request never answers in time
    client = client_app(redis_url)
    res = client.send_task("tokpulse.embed_documents", args=[ns], kwargs={"documents": docs}, queue="embeddings")
    # mid-batch: the job's chunks are claimed (locked) and their request is inside the provider
    # (the fake has taken the hang off its list: the request arrived and is being held)
    wait_for(lambda: _locked_pending(res.id) and not fake_openai._hangs, 60, message="the job to be mid-batch")
    victims = psutil.Process(worker.pid).children(recursive=True)
    assert victims, "no pool process"
    for p in victims:
        os.kill(p.pid, signal.SIGKILL)

    out = res.get(timeout=90)
    assert out["Total"] == 6 and out["Failed"] == 0
    assert out["Processed"] + out["Skipped"] == 6
    assert _stored(ns) == (6, 6), "chunks lost or duplicated"
    with db.transaction() as cur:
        cur.execute("SELECT count(*) FROM ai_embedding_queue WHERE job_id = %s AND status = 'pending'", (res.id,))
        assert cur.fetchone()[0] == 0
    # the new namespace's own partition gets its HNSW index from tokpulse.build_vector_index,
    # which the job sent when its load was drained
    from tokpulse.embeddings import store

    def _indexed() -> bool:
        with db.transaction() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (store.partition_name(ns) + "_hnsw",))
            return cur.fetchone()[0]

    wait_for(_indexed, 60, message="the namespace's vector index to be built")
    assert fake_openai.count(path="/v1/embeddings", status=200) >= 1

    # the same job again (as a redelivery would): nothing new reaches the provider
    before = fake_openai.count(path="/v1/embeddings")
    again = client.send_task("tokpulse.embed_documents", args=[ns], kwargs={"documents": docs},
                             queue="embeddings").get(timeout=60)
    assert (again["Skipped"], again["Processed"], again["Cost"]) == (6, 0, 0)
    assert fake_openai.count(path="/v1/embeddings") == before

    found = client.send_task("tokpulse.search", args=[{"query": f"release trains {tag}", "namespace": ns,
                                                       "limit": 3}], queue="embeddings").get(timeout=60)
    assert found["count"] == 3 and all(r["source"].startswith("doc") for r in found["results"])
    empty = client.send_task("tokpulse.search", args=[{"query": "x", "namespace": ns + "-none"}],
                             queue="embeddings").get(timeout=60)
    assert empty["results"] == []
    bad = client.send_task("tokpulse.search", args=[{"query": "x" * 5000, "namespace": ns}], queue="embeddings")
    with pytest.raises(Exception, match="limit is 2000"):
        bad.get(timeout=60)


def _post(url: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_up_serves_the_search_api_with_cli_tokens(tmp_path, fake_openai):
    env = {**os.environ, "TOKPULSE_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1",
           "OPENAI_API_KEY": fake_openai.api_key, "OPENAI_BASE_URL": fake_openai.base_url}
    env.pop("FLOWER_BASIC_AUTH", None)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "tokpulse.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen([PYTHON, "-m", "tokpulse.cli", "up", "--pools", "embeddings", "--no-beat", "--no-flower",
                           "--concurrency", "1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        def api_url():
            r = cli("status", "--json", "--timeout", "2")
            try:
                return json.loads(r.stdout).get("api_url")
            except ValueError:
                return None

        url = wait_for(api_url, 90, interval=1, message="api_url in status --json")
        assert url.startswith("http://127.0.0.1:")

        def healthy():
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(healthy, 60, interval=0.5, message="the API to answer /healthz")

        ns = f"e2e-api-{uuid.uuid4().hex[:8]}"
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "deploy.md").write_text("# Deploy\n\nPromote the canary, then the release goes to production.\n")
        (docs / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
        r = cli("embed", str(docs), ns)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.strip().splitlines()
        assert lines[-5:] == ["Total: 1", "Processed: 1", "Skipped: 0", "Failed: 0", lines[-1]]
        assert lines[-1].startswith("Cost: $") and "binary" in r.stdout

        r = cli("token", "create", "--namespace", ns, "--name", "e2e", "--json")
        assert r.returncode == 0, r.stderr
        token = json.loads(r.stdout)["token"]
        listing = cli("token", "list")
        assert token not in listing.stdout and token[:12] in listing.stdout

        status, err = _post(url + "/search", {"query": "canary production", "namespace": ns})
        assert status == 401 and "bearer" in err["error"]["message"].lower()
        status, res = _post(url + "/search", {"query": "canary production", "namespace": ns}, token)
        assert status == 200 and res["results"][0]["source"] == "docs/deploy.md"
        status, _ = _post(url + "/search", {"query": "canary", "namespace": "someone-else"}, token)
        assert status == 403

        r = cli("search", "canary production", "--namespace", ns, "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["results"][0]["source"] == "docs/deploy.md"

        assert cli("token", "revoke", token[:12]).returncode == 0
        status, _ = _post(url + "/search", {"query": "canary production", "namespace": ns}, token)
        assert status == 401
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)
            try:
                up.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
        log.close()
