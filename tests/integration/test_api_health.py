"""`GET /healthz` of the search API stays answerable while searches occupy every worker
thread: a supervisor's healthcheck must not restart a service that is merely busy."""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import urllib.error
import urllib.request

import pytest

from tokpulse.api.tokens import create_token
from workers import db

# Long enough for a loaded 2-core machine, far shorter than the searches stay blocked.
HEALTH_ANSWER_WITHIN = 10.0
SEARCHES_BLOCKED_FOR = 60.0


@pytest.fixture
def serve():
    """Serve a Tornado app on a loopback port from its own thread and event loop."""
    import tornado.httpserver
    import tornado.netutil

    from tokpulse.api.server import HARD_BODY_BYTES

    loops: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []

    def start(app) -> str:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        state: dict = {}

        def run():
            asyncio.set_event_loop(loop)

            async def listen():
                server = tornado.httpserver.HTTPServer(app, max_body_size=HARD_BODY_BYTES)
                sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
                server.add_sockets(sockets)
                state["port"] = sockets[0].getsockname()[1]
                ready.set()

            loop.run_until_complete(listen())
            loop.run_forever()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        loops.append((loop, t))
        assert ready.wait(10)
        return f"http://127.0.0.1:{state['port']}"

    yield start
    for loop, t in loops:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)


@pytest.fixture
def api(serve):
    from tokpulse.api.server import make_app

    return serve(make_app(embedder=None))


def _call(url: str, path: str, *, body=None, token: str | None = None, timeout: float = 30):
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_health_answers_while_every_search_thread_is_busy(api, monkeypatch):
    from tokpulse.api.server import THREADS

    namespace = "health-probe"
    with db.transaction() as cur:
        token, _ = create_token(cur, [namespace], name="healthz-test")

    entered = threading.Semaphore(0)
    release = threading.Event()

    def slow_search(body, **_):
        entered.release()
        release.wait(SEARCHES_BLOCKED_FOR)
        return {"results": [], "count": 0, "namespace": body["namespace"]}

    # The handler imports search_dict at call time, so patching the module attribute reaches it
    # (by module object: the package's `search` attribute is a function of the same name).
    monkeypatch.setattr(importlib.import_module("tokpulse.embeddings.search"), "search_dict", slow_search)

    statuses: list[int] = []

    def search() -> None:
        statuses.append(_call(api, "/search", body={"query": "q", "namespace": namespace}, token=token,
                              timeout=SEARCHES_BLOCKED_FOR + 30)[0])

    # Every search thread blocked, and more searches queued behind them.
    clients = [threading.Thread(target=search, daemon=True) for _ in range(THREADS + 2)]
    for c in clients:
        c.start()
    try:
        for n in range(THREADS):
            assert entered.acquire(timeout=30), f"only {n} of {THREADS} searches reached the search function"

        try:
            status, body = _call(api, "/healthz", timeout=HEALTH_ANSWER_WITHIN)
        except OSError as exc:  # a socket timeout, bare or wrapped in URLError
            pytest.fail(f"/healthz did not answer within {HEALTH_ANSWER_WITHIN}s while searches were busy: {exc!r}")
        assert status == 200 and body == {"status": "ok"}
        assert not release.is_set() and len(statuses) == 0, "the searches must still be blocked"
    finally:
        release.set()
    for c in clients:
        c.join(SEARCHES_BLOCKED_FOR)
    # The searches were only slow, not broken: every one, queued or blocked, answers 200.
    assert statuses == [200] * (THREADS + 2)


def test_health_is_503_when_the_database_does_not_answer(serve):
    from tokpulse.api.health import HealthCheck
    from tokpulse.api.server import make_app

    # Nothing listens on port 1: the ping's own connection is refused.
    url = serve(make_app(embedder=None, health=HealthCheck("postgresql://tokpulse@127.0.0.1:1/tokpulse")))
    status, body = _call(url, "/healthz")
    assert status == 503 and body == {"status": "unavailable", "error": "OperationalError"}
