"""The search HTTP API (Tornado app on a loopback port) with real tokens in Postgres."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request

import pytest

from tokpulse.api.tokens import TokenVerifier, create_token, hash_token, list_tokens, revoke_token
from tokpulse.embeddings.pipeline import ingest
from tokpulse.embeddings.search import MAX_QUERY_CHARS
from workers import db


@pytest.fixture
def api(embedder):
    import tornado.httpserver
    import tornado.netutil

    from tokpulse.api.server import HARD_BODY_BYTES, make_app

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    def run():
        asyncio.set_event_loop(loop)

        async def start():
            server = tornado.httpserver.HTTPServer(make_app(embedder=embedder), max_body_size=HARD_BODY_BYTES)
            sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
            server.add_sockets(sockets)
            state["port"] = sockets[0].getsockname()[1]
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{state['port']}"
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


def call(url: str, path: str = "/search", body=None, token: str | None = None, raw: bytes | None = None,
         method: str = "POST"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read()), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), {k.lower(): v for k, v in e.headers.items()}


@pytest.fixture
def token_for(namespace):
    def make(*namespaces: str, **kw) -> str:
        with db.transaction() as cur:
            token, _ = create_token(cur, list(namespaces) or [namespace], **kw)
        return token

    return make


def test_search_requires_a_valid_token(api, embedder, namespace, token_for):
    ingest(namespace, documents=[{"text": "# Deploy\n\nShip it to production.", "source": "d.md"}], embedder=embedder)
    body = {"query": "production", "namespace": namespace}
    status, err, headers = call(api, body=body)
    assert status == 401 and err["error"]["code"] == "unauthorized"
    assert headers.get("www-authenticate", "").startswith("Bearer")
    assert call(api, body=body, token="tpk_" + "x" * 43)[0] == 401
    assert call(api, body=body, token="not-even-a-token")[0] == 401

    token = token_for()
    status, res, headers = call(api, body=body, token=token)
    assert status == 200 and res["results"][0]["source"] == "d.md"
    assert res["results"][0]["match"] in ("vector", "keyword", "both")
    assert headers["cache-control"] == "no-store"

    with db.transaction() as cur:
        assert revoke_token(cur, token[:12])
    assert call(api, body=body, token=token)[0] == 401


def test_a_token_never_sees_another_namespace(api, embedder, namespace, token_for):
    other = namespace + "-secret"
    ingest(other, documents=["the secret plans for the launch"], embedder=embedder)
    token = token_for(namespace)
    status, err, _ = call(api, body={"query": "secret plans", "namespace": other}, token=token)
    assert status == 403 and err["error"]["code"] == "forbidden" and "results" not in err
    wide = token_for("*")
    status, res, _ = call(api, body={"query": "secret plans", "namespace": other}, token=wide)
    assert status == 200 and res["count"] == 1


def test_unknown_namespace_is_an_empty_result_not_an_error(api, token_for, namespace):
    status, res, _ = call(api, body={"query": "anything", "namespace": namespace}, token=token_for())
    assert status == 200 and res["results"] == [] and res["count"] == 0


def test_bad_requests_get_clear_json_errors(api, token_for, namespace):
    token = token_for()
    status, err, _ = call(api, body={"query": "q" * (MAX_QUERY_CHARS + 1), "namespace": namespace}, token=token)
    assert status == 422 and err["error"]["code"] == "query_too_long" and str(MAX_QUERY_CHARS) in \
        err["error"]["message"]
    status, err, _ = call(api, raw=b"{not json", token=token)
    assert status == 400 and err["error"]["code"] == "bad_json"
    for body, word in (({"namespace": namespace}, "query"), ({"query": "x", "namespace": namespace, "limit": 0},
                                                              "limit"),
                       ({"query": "x", "namespace": namespace, "threshold": 2}, "threshold"),
                       ({"query": "x", "namespace": namespace, "hybrid": "yes"}, "hybrid"),
                       ({"query": "x", "namespace": namespace, "colour": 1}, "colour")):
        status, err, _ = call(api, body=body, token=token)
        assert status == 422 and word in err["error"]["message"], body
    status, err, _ = call(api, raw=b'{"query": "' + b"a" * 70_000 + b'"}', token=token)
    assert status == 413
    status, err, _ = call(api, path="/nope", body={}, token=token)
    assert status == 404 and err["error"]["code"] == "not_found"
    status, err, _ = call(api, method="GET", token=token)
    assert status == 405


def test_health(api):
    status, res, _ = call(api, path="/healthz", method="GET")
    assert status == 200 and res == {"status": "ok"}


def test_tokens_are_stored_hashed_scoped_and_expire(namespace):
    with db.transaction() as cur:
        token, info = create_token(cur, [namespace, namespace], name="ci")
        cur.execute("SELECT token_hash, prefix, namespaces FROM api_tokens WHERE id = %s", (info.id,))
        stored_hash, prefix, namespaces = cur.fetchone()
        cur.execute("SELECT count(*) FROM api_tokens WHERE token_hash = %s OR prefix = %s AND token_hash = %s",
                    (token, prefix, token))
        assert cur.fetchone()[0] == 0, "the token itself is stored somewhere"
    assert stored_hash == hash_token(token) and token.startswith(prefix) and namespaces == [namespace]
    v = TokenVerifier()
    got = v.verify(token)
    assert got is not None and got.id == info.id and got.allows(namespace) and not got.allows(namespace + "x")
    with db.transaction() as cur:
        expired, _ = create_token(cur, [namespace], expires_days=0.5)
        cur.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = %s",
                    (hash_token(expired),))
    assert v.verify(expired) is None
    with db.transaction() as cur:
        assert [t.id for t in revoke_token(cur, str(info.id))] == [info.id]
        assert info.id not in [t.id for t in list_tokens(cur)]
        assert info.id in [t.id for t in list_tokens(cur, include_revoked=True)]
    assert v.verify(token) is None
