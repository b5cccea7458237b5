"""`tokpulse api`: the search endpoint (the spec's `search-ai` function) over HTTP.

    POST /search   Authorization: Bearer tpk_...   {"query", "namespace", "limit"?, "threshold"?, "hybrid"?}
    GET  /healthz  no auth: {"status": "ok"} when the database answers, else 503

Tornado (already installed as Flower's dependency; a long-maintained server) runs the
event loop; searches and token checks are blocking psycopg2/gateway work, so they run in
a small thread pool. The health check has its own thread and DB connection
(tokpulse/api/health.py), so busy searches never make it time out. Errors are JSON
`{"error": {"code", "message"}}`: 400 bad JSON, 401 missing/bad token (with
`WWW-Authenticate: Bearer`), 403 namespace outside the token's scope, 404/405 unknown
route/method, 413 body too large, 422 invalid request (e.g. a query over the length
limit), 409 model mismatch, 429/503 provider limits. An unknown namespace inside the
token's scope answers 200 with no results. Tokens never appear in logs (the access log
has method, path, status and time only)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.httpserver
import tornado.web

from tokpulse.api.health import HealthCheck
from tokpulse.api.tokens import TokenVerifier
from tokpulse.settings import Settings

log = logging.getLogger("tokpulse.api")
MAX_BODY_BYTES = 64 * 1024  # a search request is tiny; larger bodies get a JSON 413
HARD_BODY_BYTES = 1024 * 1024  # beyond this Tornado drops the connection without reading it
THREADS = 4


class _Base(tornado.web.RequestHandler):
    def initialize(self, ctx: dict[str, Any]) -> None:
        self.ctx = ctx

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.clear_header("Server")

    def send_json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, ensure_ascii=False, default=str))

    def send_error_json(self, status: int, code: str, message: str) -> None:
        if status == 401:
            self.set_header("WWW-Authenticate", f'Bearer realm="tokpulse", error="invalid_token", '
                                                f'error_description="{message}"')
        self.send_json(status, {"error": {"code": code, "message": message}})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(status_code, "error")
        message = self._reason if status_code != 500 else "internal error (see the api log)"
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": {"code": reason, "message": message}}))

    async def blocking(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.ctx["executor"], fn, *args)


class NotFound(_Base):
    def prepare(self) -> None:
        self.send_error_json(404, "not_found", f"no route {self.request.path}; the API serves POST /search")


class Health(_Base):
    async def get(self) -> None:
        # Not self.blocking(): that is the search pool, which slow searches can fill.
        try:
            await self.ctx["health"].check()
        except Exception as exc:  # noqa: BLE001 - reported as unhealthy
            self.send_json(503, {"status": "unavailable", "error": type(exc).__name__})
            return
        self.send_json(200, {"status": "ok"})


class Search(_Base):
    async def post(self) -> None:
        if len(self.request.body or b"") > MAX_BODY_BYTES:
            self.send_error_json(413, "body_too_large", f"the body is over {MAX_BODY_BYTES} bytes; a search request "
                                                        "is a small JSON object")
            return
        from tokpulse.ai import AIError, ProviderUnavailable, RateLimitWait
        from tokpulse.embeddings.search import SearchError, search_dict

        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.send_error_json(401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>'")
            return
        info = await self.blocking(self.ctx["verifier"].verify, token.strip())
        if info is None:
            self.send_error_json(401, "unauthorized", "invalid, expired or revoked token")
            return
        try:
            body = json.loads(self.request.body or b"")
        except (ValueError, UnicodeDecodeError):
            self.send_error_json(400, "bad_json", "the body must be JSON: {\"query\": ..., \"namespace\": ...}")
            return
        try:
            result = await self.blocking(
                lambda: search_dict(body, embedder=self.ctx["embedder"], allowed_namespaces=info.namespaces))
        except SearchError as exc:
            self.send_error_json(exc.status, exc.code, str(exc))
            return
        except RateLimitWait as exc:
            self.set_header("Retry-After", str(exc.countdown))
            self.send_error_json(429, "rate_limited", str(exc))
            return
        except ProviderUnavailable as exc:
            self.send_error_json(503, "provider_unavailable", str(exc))
            return
        except AIError as exc:
            self.send_error_json(502, "embedding_failed", str(exc))
            return
        self.send_json(200, result)


def make_app(*, embedder, verifier: TokenVerifier | None = None, executor=None,
             health: HealthCheck | None = None) -> tornado.web.Application:
    """The API's routes. `executor` runs searches and token checks; `health` answers
    /healthz on its own thread and connection."""
    ctx = {"embedder": embedder, "verifier": verifier or TokenVerifier(),
           "executor": executor or ThreadPoolExecutor(THREADS, thread_name_prefix="api"),
           "health": health or HealthCheck()}
    return tornado.web.Application(
        [(r"/search", Search, {"ctx": ctx}), (r"/healthz", Health, {"ctx": ctx})],
        default_handler_class=NotFound, default_handler_args={"ctx": ctx},
        compress_response=True, xheaders=False,
    )


def api_port(settings: Settings, requested: int | None = None) -> int:
    from tokpulse.embedded import Ports

    return requested or Ports(settings.home).claim("api", in_use_ok=True)


def api_url(settings: Settings, port: int) -> str:
    host = "127.0.0.1" if settings.bind in ("0.0.0.0", "::") else settings.bind
    return f"http://{host}:{port}"


def _warm_up(embedder) -> None:
    try:
        from tokpulse.ai.tokens import count_tokens

        count_tokens("warm up")
        if getattr(embedder, "provider", None) == "local":
            from tokpulse.ai.providers import _load_local_model

            _load_local_model()
    except Exception as exc:  # noqa: BLE001 - the first search reports it properly
        log.warning("search API warm-up failed: %s", type(exc).__name__)


async def _serve(settings: Settings, port: int, embedder) -> None:
    health = HealthCheck()
    app = make_app(embedder=embedder, health=health)
    server = tornado.httpserver.HTTPServer(app, max_body_size=HARD_BODY_BYTES, idle_connection_timeout=60)
    server.listen(port, address=settings.bind)
    print(f"tokpulse api: listening on {api_url(settings, port)} (POST /search, Bearer token)", flush=True)
    # Load what the first query would wait for (the offline model takes seconds), without a
    # provider call, while the server already answers.
    loop_warm = asyncio.get_running_loop().run_in_executor(None, _warm_up, embedder)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    loop_warm.cancel()
    server.stop()
    await server.close_all_connections()
    health.close()


def cmd_api(args, settings: Settings) -> int:
    from tokpulse.embeddings.embedder import GatewayEmbedder
    from tokpulse.runners import export_urls
    from workers import db, names

    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    svc = export_urls(settings)
    try:
        db.init_pool(maxconn=2 * THREADS + 2, application_name="tokpulse-api")
        with db.transaction() as cur:
            cur.execute("SELECT to_regclass('api_tokens') IS NOT NULL")
            if not cur.fetchone()[0]:
                print("tokpulse api: the api_tokens table is missing; run `tokpulse migrate` first", file=sys.stderr)
                return 1
        port = api_port(settings, getattr(args, "port", None))
        asyncio.run(_serve(settings, port, GatewayEmbedder(settings, caller=names.SEARCH)))
        return 0
    finally:
        if svc is not None:
            svc.stop()
