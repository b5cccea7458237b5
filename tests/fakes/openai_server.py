"""A loopback stand-in for the OpenAI REST API, driven by the real `openai` SDK in tests.

    with FakeOpenAI(rpm=60) as fake:
        client = openai.OpenAI(api_key=fake.api_key, base_url=fake.base_url, max_retries=0)
        client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        assert fake.count(path="/v1/embeddings", status=200) == 1

Endpoints: POST /v1/embeddings, POST /v1/chat/completions (also `stream: true`),
GET /v1/models, GET /v1/models/{id}. Standard library only, plus `bpe_openai` (offline cl100k_base)
for token counts.

Token rules (documented because tests compare against them):
  * embeddings: usage.prompt_tokens = sum over inputs of cl100k tokens (token-array inputs: their length).
  * chat: prompt_tokens = sum over messages of (3 + tokens(role) + tokens(content) [+ tokens(name) + 1])
    + 3, content parts of type "text" count their text, any other part (image, audio...) counts 85;
    completion_tokens = cl100k tokens of the returned content (x n choices).
  * rate-limit tokens ("requested" in TPM checks): embeddings = prompt_tokens; chat = prompt_tokens +
    n * (max_completion_tokens or max_tokens or 0), like OpenAI's up-front estimate.

Rate limits are per model, continuously refilling buckets (capacity = limit per minute, refilling
limit/60 per second). With `rpm`/`tpm` = None nothing is enforced, but the x-ratelimit-* headers still
report a nominal 10,000 RPM / 10,000,000 TPM bucket. Setting `rpm` or `tpm` gives every model a fresh,
full bucket of the new size.

Request order inside the server: hang_next / latency -> auth (401) -> unknown route (404) ->
fail_next (5xx) -> force_429_next -> request validation (400/404) -> rate limits (429) -> response
(malformed_next replaces a would-be 200). Injected faults are only consumed by authenticated requests
to known routes; hangs and latency apply to every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import select
import socket
import struct
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeOpenAI", "count_tokens", "count_chat_tokens", "go_duration"]

# --------------------------------------------------------------------------------------------------
# Shared loopback plumbing (also used by github_server.py)
# --------------------------------------------------------------------------------------------------

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class FakeRequest:
    """One parsed HTTP request handed to a fake's `_handle`."""

    def __init__(self, handler: BaseHTTPRequestHandler, method: str, raw: bytes) -> None:
        parts = urlsplit(handler.path)
        self.handler = handler
        self.method = method
        self.path = unquote(parts.path) or "/"
        self.raw_path = parts.path or "/"
        self.query: dict[str, str] = {
            k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()
        }
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        self.raw = raw
        self.started = time.monotonic()

    def json(self) -> Any:
        """The parsed JSON body; raises ValueError when the body is not valid JSON."""
        if not self.raw:
            raise ValueError("empty body")
        return json.loads(self.raw.decode("utf-8"))

    def client_gone(self) -> bool:
        """True when the client closed its side of the connection (e.g. after a timeout)."""
        sock = self.handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


class FakeResponse:
    def __init__(
        self,
        status: int,
        body: bytes | str | Any = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode("utf-8")
        self.status = status
        self.body = bytes(body)
        self.headers = dict(headers or {})
        self.headers.setdefault("content-type", content_type)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host with getfqdn(), which can stall without DNS.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = port


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-api"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are dropped after a minute
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid Nagle/delayed-ACK stalls

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        fake = self.server.fake  # type: ignore[attr-defined]
        try:
            request = FakeRequest(self, self.command, self._read_body())
        except (OSError, ValueError):
            self.close_connection = True
            return
        try:
            response = fake._handle(request)
        except Exception as exc:  # a bug in the fake: make it loud, not a hung client
            response = FakeResponse(
                500, {"error": {"message": f"fake server error: {exc!r}", "type": "server_error"}}
            )
        if response is None:  # no answer at all (hang that outlived the client, or shutdown)
            self.close_connection = True
            return
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _dispatch


class LoopbackFake:
    """Base class: a ThreadingHTTPServer bound to loopback in a daemon thread.

    Subclasses implement `_handle(request) -> FakeResponse | None`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in _LOOPBACK_HOSTS:
            raise ValueError(f"fake servers bind loopback only, not {host!r}")
        self._host = host
        self._requested_port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    # lifecycle ------------------------------------------------------------------------------------
    def start(self) -> LoopbackFake:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server((self._host, self._requested_port), _Handler)
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes sleeping latency/hang waits
        httpd.shutdown()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:  # unblock handler threads parked on idle keep-alive connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._httpd.server_address[1])

    @property
    def root_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    # helpers for subclasses ---------------------------------------------------------------------
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; False when interrupted by stop()."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def _handle(self, request: FakeRequest) -> FakeResponse | None:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------------------------------
# Token counting (cl100k_base via bpe_openai, offline)
# --------------------------------------------------------------------------------------------------

_ENCODING_LOCK = threading.Lock()
_ENCODING: Any = None
_CHUNK_CHARS = 40_000  # <= 160 KB of UTF-8, safely under bpe_openai's 200k-token chunk limit


def _encoding() -> Any:
    global _ENCODING
    if _ENCODING is None:
        with _ENCODING_LOCK:
            if _ENCODING is None:
                with warnings.catch_warnings():  # bpe_openai uses the deprecated importlib.resources API
                    warnings.simplefilter("ignore", DeprecationWarning)
                    import bpe_openai

                    _ENCODING = bpe_openai.get_encoding("cl100k_base")
    return _ENCODING


def _split_long(text: str) -> Iterable[str]:
    start = 0
    while start < len(text):
        end = min(len(text), start + _CHUNK_CHARS)
        if end < len(text):
            cut = text.rfind(" ", start + _CHUNK_CHARS // 2, end)  # cut before a space: tokens start there
            if cut > start:
                end = cut
        yield text[start:end]
        start = end


def count_tokens(text: str) -> int:
    """cl100k_base token count; special-token text counts as ordinary text (as the API does)."""
    if not text:
        return 0
    enc = _encoding()
    if len(text) <= _CHUNK_CHARS:
        return len(enc.encode_ordinary(text))
    return sum(len(enc.encode_ordinary(chunk)) for chunk in _split_long(text))


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text"):
                total += count_tokens(str(part.get("text") or ""))
            elif isinstance(part, str):
                total += count_tokens(part)
            else:
                total += 85  # images/audio: flat low-detail cost
        return total
    return count_tokens(json.dumps(content))


def count_chat_tokens(messages: list[dict[str, Any]]) -> int:
    """OpenAI cookbook rule: 3 per message + role + content (+ name + 1), plus 3 priming the reply."""
    total = 3
    for message in messages:
        total += 3 + count_tokens(str(message.get("role") or "")) + _content_tokens(message.get("content"))
        if message.get("name"):
            total += count_tokens(str(message["name"])) + 1
        if message.get("tool_calls"):
            total += count_tokens(json.dumps(message["tool_calls"]))
    return total


def _truncate_tokens(text: str, limit: int) -> str:
    enc = _encoding()
    return enc.decode(enc.encode_ordinary(text)[:limit])


# --------------------------------------------------------------------------------------------------
# Deterministic embeddings
# --------------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\w+")
_SLOTS = 4  # positions each feature touches (feature hashing)


@lru_cache(maxsize=200_000)
def _feature_slots(salt: str, feature: str, dims: int) -> tuple[tuple[int, float], ...]:
    digest = hashlib.blake2b(f"{salt}\x1f{feature}".encode("utf-8", "surrogatepass"), digest_size=20).digest()
    out = []
    for i in range(_SLOTS):
        value = int.from_bytes(digest[4 * i : 4 * i + 4], "little")
        sign = 1.0 if (digest[16] >> i) & 1 else -1.0
        out.append((value % dims, sign))
    return tuple(out)


def _accumulate(vec: list[float], salt: str, counts: Counter, dims: int) -> None:
    for feature, n in counts.items():
        weight = 1.0 + math.log(n)
        for idx, sign in _feature_slots(salt, feature, dims):
            vec[idx] += sign * weight


def _normalised(vec: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vec))
    return [x / norm for x in vec] if norm > 0 else vec


@lru_cache(maxsize=4096)
def embed_text(model: str, text: str, dims: int) -> tuple[float, ...]:
    """Unit vector for (model, text, dims): hashed bag of words + hashed char trigrams + tiny noise.

    Texts sharing words score a clearly higher cosine similarity than unrelated texts (~0)."""
    low = text.lower()
    words = _WORD_RE.findall(low)
    padded = f" {' '.join(words) if words else low} "
    trigrams = Counter(padded[i : i + 3] for i in range(len(padded) - 2))
    word_vec = [0.0] * dims
    _accumulate(word_vec, model + "|w", Counter(words), dims)
    tri_vec = [0.0] * dims
    _accumulate(tri_vec, model + "|t", trigrams, dims)
    raw = hashlib.shake_256(f"{model}\x1f{dims}\x1f{text}".encode("utf-8", "surrogatepass")).digest(2 * dims)
    noise = _normalised([float(v) for v in struct.unpack(f"<{dims}h", raw)])
    word_vec, tri_vec = _normalised(word_vec), _normalised(tri_vec)
    combined = [w + 0.4 * t + 0.08 * z for w, t, z in zip(word_vec, tri_vec, noise, strict=True)]
    unit = _normalised(combined)
    # float32 round trip so the float and base64 encodings carry identical numbers
    return struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *unit))


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

EMBEDDING_MODELS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
CHAT_MODELS: dict[str, int] = {  # model -> context window
    "gpt-4o-mini": 128_000,
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "gpt-4-turbo": 128_000,
    "gpt-3.5-turbo": 16_385,
    "o3-mini": 200_000,
    "o4-mini": 200_000,
    "gpt-5": 400_000,
    "gpt-5-mini": 400_000,
    "gpt-5-nano": 400_000,
}
NOMINAL_RPM = 10_000
NOMINAL_TPM = 10_000_000
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_INPUT_TOKENS = 8192
MAX_EMBEDDING_REQUEST_TOKENS = 300_000
_ORG = "org-fake"
_ALPHANUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def go_duration(seconds: float) -> str:
    """OpenAI's reset-duration strings (Go time.Duration style): '120ms', '1s', '1.234s', '6m0s'."""
    ms = int(math.ceil(max(0.0, seconds) * 1000 - 1e-9))
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, sec_ms = divmod(rest, 60_000)
    sec = f"{sec_ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{sec}s"
    if minutes:
        return f"{minutes}m{sec}s"
    return f"{sec}s"


def _error(
    message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _mask_key(key: str) -> str:
    return f"{key[:3]}...{key[-4:]}" if len(key) > 8 else "*" * len(key)


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be None (unlimited) or a positive int; force_429_next() always 429s")


class _HTTPError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.status = status
        self.body = body


class _Bucket:
    """Continuously refilling bucket: capacity = per-minute limit, refill limit/60 per second."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        self.level = float(self.capacity)
        self.stamp = time.monotonic()

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        self.level = min(float(self.capacity), self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.rate)

    def headers(self, kind: str) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{kind}": str(self.capacity),
            f"x-ratelimit-remaining-{kind}": str(max(0, int(math.floor(self.level + 1e-9)))),
            f"x-ratelimit-reset-{kind}": go_duration((self.capacity - self.level) / self.rate),
        }


class _Fault:
    def __init__(self, kind: str, **params: Any) -> None:
        self.kind = kind
        self.params = params


def _schema_example(schema: Any, depth: int = 0) -> Any:
    """A minimal value matching a JSON schema (for response_format json_schema)."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _schema_example(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {
            name: _schema_example(sub, depth + 1) for name, sub in (schema.get("properties") or {}).items()
        }
    if kind == "array":
        return []
    if kind == "string":
        return "fake"
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    return None


def default_responder(request: dict[str, Any]) -> str:
    """Deterministic reply that quotes nothing from the prompt; JSON when response_format asks for it."""
    model = str(request.get("model"))
    messages = request.get("messages") or []
    ref = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()[:12]
    response_format = request.get("response_format") or {}
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return json.dumps(
            {"fake": True, "model": model, "ref": ref, "summary": "Deterministic fake response."}
        )
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        value = _schema_example(schema)
        return json.dumps(value if value is not None else {})
    return (
        f"Deterministic fake reply from {model} (ref {ref}) to a conversation of {len(messages)} message(s)."
    )


# --------------------------------------------------------------------------------------------------
# FakeOpenAI
# --------------------------------------------------------------------------------------------------


class FakeOpenAI(LoopbackFake):
    """Loopback OpenAI API. See the module docstring for the rules it follows."""

    DEFAULT_KEY = "sk-fake-tokpulse-0123456789abcdef"

    def __init__(
        self,
        api_keys: Iterable[str] | str | None = None,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        latency: float = 0.0,
        responder: Callable[[dict[str, Any]], Any] | None = None,
        extra_models: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        if isinstance(api_keys, str):
            api_keys = [api_keys]
        self.api_keys: list[str] = list(api_keys or [self.DEFAULT_KEY])
        if not self.api_keys:
            raise ValueError("at least one API key is required")
        self.chat_models: dict[str, int] = dict(CHAT_MODELS)
        for name in extra_models:
            self.chat_models.setdefault(name, 128_000)
        self._lock = threading.RLock()
        _check_limit("rpm", rpm)
        _check_limit("tpm", tpm)
        self._rpm = rpm
        self._tpm = tpm
        self._buckets: dict[str, dict[str, _Bucket]] = {}
        self._faults: list[_Fault] = []
        self._hangs: list[float] = []
        self._records: list[dict[str, Any]] = []
        self.latency = float(latency)
        self.responder: Callable[[dict[str, Any]], Any] = responder or default_responder

    # public attributes -------------------------------------------------------------------------
    @property
    def api_key(self) -> str:
        return self.api_keys[0]

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def rpm(self) -> int | None:
        return self._rpm

    @rpm.setter
    def rpm(self, value: int | None) -> None:
        _check_limit("rpm", value)
        with self._lock:
            self._rpm = value
            for buckets in self._buckets.values():
                buckets.pop("requests", None)

    @property
    def tpm(self) -> int | None:
        return self._tpm

    @tpm.setter
    def tpm(self, value: int | None) -> None:
        _check_limit("tpm", value)
        with self._lock:
            self._tpm = value
            for buckets in self._buckets.values():
                buckets.pop("tokens", None)

    # fault injection ---------------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 500, body: Any = None) -> None:
        """The next n authenticated requests to known routes get `status` (default OpenAI error bodies;
        502 is Cloudflare-style HTML like the real edge). `body`: dict/str/bytes to send instead."""
        with self._lock:
            self._faults.extend(_Fault("fail", status=status, body=body) for _ in range(n))

    def malformed_next(self, n: int = 1, kind: str = "invalid_json") -> None:
        """The next n would-be 200s are broken: kind "invalid_json" (truncated body) or "missing_field"
        (valid JSON without `data` / `choices`)."""
        if kind not in ("invalid_json", "missing_field"):
            raise ValueError("kind must be 'invalid_json' or 'missing_field'")
        with self._lock:
            self._faults.extend(_Fault("malformed", how=kind) for _ in range(n))

    def force_429_next(self, n: int = 1, retry_after: float = 1.0, kind: str = "requests") -> None:
        """The next n requests get a rate-limit 429 (type `kind`) with retry-after headers."""
        with self._lock:
            self._faults.extend(
                _Fault("force_429", retry_after=float(retry_after), limit_kind=kind) for _ in range(n)
            )

    def hang_next(self, n: int = 1, seconds: float = 30.0) -> None:
        """The next n requests (any) stall `seconds` before being processed. If the client gave up
        meanwhile the request is recorded with status 499 and nothing is processed or charged."""
        with self._lock:
            self._hangs.extend([float(seconds)] * n)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hangs.clear()

    # records -----------------------------------------------------------------------------------
    @property
    def requests(self) -> list[dict[str, Any]]:
        """Snapshot (in arrival order) of the per-request records."""
        with self._lock:
            return list(self._records)

    def count(
        self,
        path: str | None = None,
        status: int | None = None,
        method: str | None = None,
        model: str | None = None,
    ) -> int:
        return len(self._select(path, status, method, model))

    def total_tokens(
        self, status: int | None = 200, path: str | None = None, model: str | None = None
    ) -> int:
        """Sum of usage.total_tokens (prompt + completion) over matching records; status=None: all."""
        return sum(r["total_tokens"] for r in self._select(path, status, None, model))

    def last(self, path: str | None = None) -> dict[str, Any] | None:
        found = self._select(path, None, None, None)
        return found[-1] if found else None

    def reset(self) -> None:
        """Forget records, pending faults and rate-limit usage (keeps keys, rpm/tpm, latency, responder)."""
        with self._lock:
            self._records.clear()
            self._faults.clear()
            self._hangs.clear()
            self._buckets.clear()

    def _select(self, path, status, method, model) -> list[dict[str, Any]]:
        with self._lock:
            records = list(self._records)
        out = []
        for r in records:
            if path is not None and r["path"] not in (path, "/v1" + path):
                continue
            if status is not None and r["status"] != status:
                continue
            if method is not None and r["method"] != method.upper():
                continue
            if model is not None and r["model"] != model:
                continue
            out.append(r)
        return out

    # rate limiting -----------------------------------------------------------------------------
    def _model_buckets(self, model: str) -> dict[str, _Bucket]:
        buckets = self._buckets.setdefault(model, {})
        if "requests" not in buckets:
            buckets["requests"] = _Bucket(self._rpm if self._rpm is not None else NOMINAL_RPM)
        if "tokens" not in buckets:
            buckets["tokens"] = _Bucket(self._tpm if self._tpm is not None else NOMINAL_TPM)
        now = time.monotonic()
        for bucket in buckets.values():
            bucket.refill(now)
        return buckets

    def _ratelimit_headers(self, model: str | None) -> dict[str, str]:
        with self._lock:
            if model is None:
                buckets = {
                    "requests": _Bucket(self._rpm if self._rpm is not None else NOMINAL_RPM),
                    "tokens": _Bucket(self._tpm if self._tpm is not None else NOMINAL_TPM),
                }
            else:
                buckets = self._model_buckets(model)
            headers = buckets["requests"].headers("requests")
            headers.update(buckets["tokens"].headers("tokens"))
        return headers

    def _rate_limit_body(self, model: str, kind: str, limit: int, used: int, requested: int, wait: float):
        label = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
        return _error(
            f"Rate limit reached for {model} in organization {_ORG} on {label}: Limit {limit}, Used {used}, "
            f"Requested {requested}. Please try again in {go_duration(wait)}. "
            "Visit https://platform.openai.com/account/rate-limits to learn more.",
            kind,
            None,
            "rate_limit_exceeded",
        )

    def _charge(self, model: str, tokens: int) -> FakeResponse | None:
        """Take 1 request + `tokens` from the model's buckets, or build the 429."""
        with self._lock:
            buckets = self._model_buckets(model)
            req, tok = buckets["requests"], buckets["tokens"]
            enforce_req, enforce_tok = self._rpm is not None, self._tpm is not None
            if enforce_tok and tokens > tok.capacity:
                body = _error(
                    f"Request too large for {model} in organization {_ORG} on tokens per min (TPM): "
                    f"Limit {tok.capacity}, Requested {tokens}. The input or output tokens must be reduced "
                    "in "
                    "order to run successfully. Visit https://platform.openai.com/account/rate-limits to "
                    "learn more.",
                    "tokens",
                    None,
                    "rate_limit_exceeded",
                )
                return FakeResponse(429, body)
            failing = None
            if enforce_req and req.level < 1:
                failing = ("requests", req, 1)
            elif enforce_tok and tok.level < tokens:
                failing = ("tokens", tok, tokens)
            if failing is None:
                req.level -= 1
                tok.level -= tokens
                return None
            kind, bucket, amount = failing
            wait = bucket.wait_for(amount)
            used = int(round(bucket.capacity - bucket.level))
            body = self._rate_limit_body(model, kind, bucket.capacity, used, amount, wait)
        return FakeResponse(
            429,
            body,
            {
                "retry-after": str(max(1, math.ceil(wait))),
                "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
            },
        )

    # request handling --------------------------------------------------------------------------
    def _take_fault(self, kinds: tuple[str, ...]) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.kind in kinds:
                    return self._faults.pop(i)
            return None

    def _handle(self, request: FakeRequest) -> FakeResponse | None:
        record: dict[str, Any] = {
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "status": None,
            "model": None,
            "body": None,
            "auth_ok": False,
            "n_inputs": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "rate_limited": False,
            "fault": None,
            "request_id": "req_" + secrets.token_hex(16),
            "headers": dict(request.headers),
            "duration": None,
        }
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        record["body"] = body
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            record["model"] = body["model"]
        with self._lock:
            self._records.append(record)
            hang = self._hangs.pop(0) if self._hangs else None

        if hang is not None:
            record["fault"] = "hang"
            if not self._sleep(hang) or request.client_gone():
                return self._finish(record, None, request)
        if self.latency > 0 and not self._sleep(self.latency):
            return self._finish(record, None, request)

        response = self._route(request, body, record)
        return self._finish(record, response, request)

    def _finish(self, record: dict[str, Any], response: FakeResponse | None, request: FakeRequest):
        record["duration"] = time.monotonic() - request.started
        if response is None:
            record["status"] = 499  # nginx's "client closed request": nothing was sent
            return None
        headers = self._ratelimit_headers(record["model"] if record["auth_ok"] else None)
        headers.update(
            {
                "x-request-id": record["request_id"],
                "openai-organization": _ORG,
                "openai-version": "2020-10-01",
                "openai-processing-ms": str(int(record["duration"] * 1000)),
            }
        )
        headers.update(response.headers)
        response.headers = headers
        record["status"] = response.status
        return response

    def _check_auth(self, request: FakeRequest) -> FakeResponse | None:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() == "bearer" and key in self.api_keys:
            return None
        if not key or scheme.lower() != "bearer":
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with "
                "blank "
                "username) if you're accessing the API from your browser and are prompted for a username and "
                "password. You can obtain an API key from https://platform.openai.com/account/api-keys."
            )
        else:
            message = (
                f"Incorrect API key provided: {_mask_key(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        return FakeResponse(401, _error(message, "invalid_request_error", None, "invalid_api_key"))

    def _route(self, request: FakeRequest, body: Any, record: dict[str, Any]) -> FakeResponse:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        record["auth_ok"] = True
        path = request.path.rstrip("/") or "/"
        method = request.method
        if method == "POST" and path == "/v1/embeddings":
            endpoint = self._embeddings
        elif method == "POST" and path == "/v1/chat/completions":
            endpoint = self._chat
        elif method == "GET" and path == "/v1/models":
            endpoint = self._list_models
        elif method == "GET" and path.startswith("/v1/models/"):
            endpoint = self._get_model
        else:
            return FakeResponse(404, _error(f"Invalid URL ({method} {request.path})"))

        fault = self._take_fault(("fail", "force_429"))
        if fault is not None and fault.kind == "fail":
            record["fault"] = "fail"
            return self._failure(fault.params["status"], fault.params["body"])
        if fault is not None:
            record["fault"] = "force_429"
            record["rate_limited"] = True
            wait = fault.params["retry_after"]
            model = record["model"] or "unknown"
            kind = fault.params["limit_kind"]
            limit = (self._rpm or NOMINAL_RPM) if kind == "requests" else (self._tpm or NOMINAL_TPM)
            body_429 = self._rate_limit_body(model, kind, limit, limit, 1, wait)
            return FakeResponse(
                429,
                body_429,
                {
                    "retry-after": str(math.ceil(wait)),
                    "retry-after-ms": str(int(round(wait * 1000))),
                },
            )
        try:
            return endpoint(request, body, record)
        except _HTTPError as exc:
            return FakeResponse(exc.status, exc.body)

    @staticmethod
    def _failure(status: int, body: Any) -> FakeResponse:
        if body is not None:
            return FakeResponse(status, body)
        if status == 502:
            html = (
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
                "Gateway"
                "</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
            )
            return FakeResponse(502, html, content_type="text/html")
        if status == 503:
            return FakeResponse(
                503, _error("The engine is currently overloaded, please try again later.", "server_error")
            )
        return FakeResponse(
            status,
            _error(
                "The server had an error while processing your request. Sorry about that!", "server_error"
            ),
        )

    def _parse_object(self, body: Any) -> dict[str, Any]:
        if body is None:
            raise _HTTPError(
                400,
                _error(
                    "We could not parse the JSON body of your request. (HINT: This likely means you "
                    "aren't using your "
                    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
                    "not valid "
                    "JSON. If you have trouble figuring out how to fix this, please contact us through "
                    "our help "
                    "center at help.openai.com.)"
                ),
            )
        if not isinstance(body, dict):
            raise _HTTPError(
                400,
                _error("Invalid type for request body: expected an object.", param=None, code="invalid_type"),
            )
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise _HTTPError(400, _error("you must provide a model parameter", param=None, code=None))
        return body

    def _malformed(self, record: dict[str, Any], stream: bool = False) -> FakeResponse | None:
        fault = self._take_fault(("malformed",))
        if fault is None:
            return None
        record["fault"] = "malformed"
        if fault.params["how"] == "invalid_json":
            body = (
                b'data: {"id": "chatcmpl-broken", "choices": [\n\n'
                if stream
                else b'{"object": "list", "data": [{'
            )
            return FakeResponse(200, body, content_type="text/event-stream" if stream else "application/json")
        return FakeResponse(
            200,
            {
                "object": "list" if record["path"].endswith("embeddings") else "chat.completion",
                "model": record["model"],
            },
        )

    # /v1/embeddings -----------------------------------------------------------------------------
    def _embeddings(self, request: FakeRequest, body: Any, record: dict[str, Any]) -> FakeResponse:
        body = self._parse_object(body)
        model = body["model"]
        if model not in EMBEDDING_MODELS:
            if model in self.chat_models:
                raise _HTTPError(
                    400, _error(f"The model `{model}` does not support embeddings.", param="model")
                )
            raise _HTTPError(
                404,
                _error(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    code="model_not_found",
                ),
            )
        encoding_format = body.get("encoding_format") or "float"
        if encoding_format not in ("float", "base64"):
            raise _HTTPError(
                400,
                _error(
                    f"Invalid value: '{encoding_format}'. Supported values are: 'float' and 'base64'.",
                    param="encoding_format",
                    code="invalid_value",
                ),
            )
        dims = EMBEDDING_MODELS[model]
        if body.get("dimensions") is not None:
            requested = body["dimensions"]
            if model == "text-embedding-ada-002":
                raise _HTTPError(
                    400, _error("This model does not support specifying dimensions.", param="dimensions")
                )
            if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
                raise _HTTPError(
                    400,
                    _error(
                        f"Invalid value for 'dimensions' = {requested}. Must be greater than or equal to 1.",
                        param="dimensions",
                    ),
                )
            if requested > dims:
                raise _HTTPError(
                    400,
                    _error(
                        f"Invalid value for 'dimensions' = {requested}. Must be less than or equal to "
                        f"{dims}.",
                        param="dimensions",
                    ),
                )
            dims = requested

        texts, counts = self._embedding_inputs(body.get("input"))
        record["n_inputs"] = len(texts)
        record["prompt_tokens"] = record["total_tokens"] = total = sum(counts)
        for n in counts:
            if n > MAX_EMBEDDING_INPUT_TOKENS:
                raise _HTTPError(
                    400,
                    _error(
                        f"This model's maximum context length is {MAX_EMBEDDING_INPUT_TOKENS} tokens, "
                        "however you "
                        f"requested {n} tokens ({n} in your prompt; 0 for the completion). Please reduce "
                        "your prompt; "
                        "or completion length."
                    ),
                )
        if total > MAX_EMBEDDING_REQUEST_TOKENS:
            raise _HTTPError(
                400,
                _error(
                    f"Requested {total} tokens, max {MAX_EMBEDDING_REQUEST_TOKENS} tokens per request",
                    "max_tokens_per_request",
                    None,
                    "max_tokens_per_request",
                ),
            )

        limited = self._charge(model, total)
        if limited is not None:
            record["rate_limited"] = True
            return limited
        broken = self._malformed(record)
        if broken is not None:
            return broken
        data = []
        for i, text in enumerate(texts):
            vector = embed_text(model, text, dims)
            if encoding_format == "base64":
                encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode("ascii")
            else:
                encoded = list(vector)
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        return FakeResponse(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": total, "total_tokens": total},
            },
        )

    def _embedding_inputs(self, raw: Any) -> tuple[list[str], list[int]]:
        invalid = _HTTPError(
            400,
            _error(
                "'$.input' is invalid. Please check the API reference: "
                "https://platform.openai.com/docs/api-reference.",
                param=None,
                code=None,
            ),
        )
        if raw is None:
            raise _HTTPError(400, _error("'input' is a required property", param="input"))
        if isinstance(raw, str):
            items: list[Any] = [raw]
        elif (
            isinstance(raw, list) and raw and all(isinstance(t, int) and not isinstance(t, bool) for t in raw)
        ):
            items = [raw]
        elif isinstance(raw, list) and raw:
            items = raw
        else:
            raise invalid
        if len(items) > MAX_EMBEDDING_INPUTS:
            raise _HTTPError(
                400,
                _error(
                    f"Too many inputs. The max number of inputs is {MAX_EMBEDDING_INPUTS}. We recommend "
                    "sending at "
                    f"most {MAX_EMBEDDING_INPUTS} inputs per request; you sent {len(items)}.",
                    param="input",
                ),
            )
        enc = _encoding()
        texts, counts = [], []
        for item in items:
            if isinstance(item, str):
                if item == "":
                    raise invalid
                texts.append(item)
                counts.append(count_tokens(item))
            elif (
                isinstance(item, list)
                and item
                and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
            ):
                if any(t < 0 or t > enc.max_token_value for t in item):
                    raise _HTTPError(
                        400,
                        _error(
                            "Invalid token in input: token ids must be valid cl100k_base ids.", param="input"
                        ),
                    )
                texts.append(enc.decode(item))
                counts.append(len(item))
            else:
                raise invalid
        return texts, counts

    # /v1/chat/completions -----------------------------------------------------------------------
    def _chat(self, request: FakeRequest, body: Any, record: dict[str, Any]) -> FakeResponse:
        body = self._parse_object(body)
        model = body["model"]
        if model not in self.chat_models:
            if model in EMBEDDING_MODELS:
                raise _HTTPError(
                    404,
                    _error(
                        "This is not a chat model and thus not supported in the v1/chat/completions "
                        "endpoint. "
                        "Did you mean to use v1/completions?",
                        param="model",
                    ),
                )
            raise _HTTPError(
                404,
                _error(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    code="model_not_found",
                ),
            )
        messages = body.get("messages")
        if messages is None:
            raise _HTTPError(
                400,
                _error(
                    "Missing required parameter: 'messages'.",
                    param="messages",
                    code="missing_required_parameter",
                ),
            )
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(
                400,
                _error(
                    "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
                    "empty array "
                    "instead.",
                    param="messages",
                    code="empty_array",
                ),
            )
        roles = ("system", "assistant", "user", "function", "tool", "developer")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in roles:
                role = message.get("role") if isinstance(message, dict) else None
                raise _HTTPError(
                    400,
                    _error(
                        f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                        "'function', "
                        "'tool', and 'developer'.",
                        param=f"messages[{i}].role",
                        code="invalid_value",
                    ),
                )
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1 or n > 128:
            raise _HTTPError(400, _error(f"Invalid 'n': {n}. Expected a value between 1 and 128.", param="n"))
        temperature = body.get("temperature")
        if temperature is not None and (
            not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2
        ):
            raise _HTTPError(
                400,
                _error(
                    "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got "
                    f"{temperature} "
                    "instead.",
                    param="temperature",
                    code="decimal_above_max_value",
                ),
            )
        max_out = body.get("max_completion_tokens") or body.get("max_tokens")
        if max_out is not None and (not isinstance(max_out, int) or max_out < 1):
            raise _HTTPError(
                400,
                _error(
                    f"Invalid 'max_tokens': integer below minimum value. Got {max_out}.",
                    param="max_tokens",
                    code="integer_below_min_value",
                ),
            )
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_object":
            if "json" not in json.dumps(messages, default=str).lower():
                raise _HTTPError(
                    400,
                    _error(
                        "'messages' must contain the word 'json' in some form, to use 'response_format' "
                        "of type "
                        "'json_object'.",
                        param="messages",
                    ),
                )

        prompt_tokens = count_chat_tokens(messages)
        record["n_inputs"] = len(messages)
        record["prompt_tokens"] = record["total_tokens"] = prompt_tokens
        context = self.chat_models[model]
        if prompt_tokens + (max_out or 0) > context:
            raise _HTTPError(
                400,
                _error(
                    f"This model's maximum context length is {context} tokens. However, your messages "
                    "resulted in "
                    f"{prompt_tokens} tokens. Please reduce the length of the messages.",
                    param="messages",
                    code="context_length_exceeded",
                ),
            )

        limited = self._charge(model, prompt_tokens + n * (max_out or 0))
        if limited is not None:
            record["rate_limited"] = True
            return limited
        stream = bool(body.get("stream"))
        broken = self._malformed(record, stream)
        if broken is not None:
            return broken

        try:
            produced = self.responder(body)
        except Exception as exc:
            return FakeResponse(500, _error(f"The fake responder raised {exc!r}", "server_error"))
        choices, completion_tokens = [], 0
        for i in range(n):
            message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
            finish = "stop"
            if isinstance(produced, dict):
                extra = dict(produced)
                finish = extra.pop("finish_reason", "stop")
                message.update(extra)
                if message.get("tool_calls") and "finish_reason" not in produced:
                    finish = "tool_calls"
            else:
                message["content"] = str(produced)
            content = message.get("content")
            if isinstance(content, str):
                tokens = count_tokens(content)
                if max_out is not None and tokens > max_out:
                    message["content"] = _truncate_tokens(content, max_out)
                    tokens, finish = max_out, "length"
                completion_tokens += tokens
            if message.get("tool_calls"):
                completion_tokens += count_tokens(json.dumps(message["tool_calls"]))
            message.setdefault("annotations", [])
            choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": finish})

        record["completion_tokens"] = completion_tokens
        record["total_tokens"] = prompt_tokens + completion_tokens
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        completion_id = "chatcmpl-" + "".join(secrets.choice(_ALPHANUM) for _ in range(29))
        fingerprint = "fp_" + hashlib.sha256(model.encode()).hexdigest()[:10]
        created = int(time.time())
        if stream:
            return self._stream(completion_id, created, model, fingerprint, choices, usage, body)
        return FakeResponse(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": fingerprint,
            },
        )

    @staticmethod
    def _stream(cid, created, model, fingerprint, choices, usage, body) -> FakeResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events: list[str] = []

        def chunk(choice_list: list[dict[str, Any]], with_usage: Any = None) -> None:
            payload: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": fingerprint,
                "choices": choice_list,
            }
            if include_usage:
                payload["usage"] = with_usage
            events.append(f"data: {json.dumps(payload)}\n\n")

        for choice in choices:
            idx = choice["index"]
            chunk(
                [
                    {
                        "index": idx,
                        "delta": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
            content = choice["message"].get("content") or ""
            for piece in re.findall(r"\s*\S+", content) or ([content] if content else []):
                chunk([{"index": idx, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])
            chunk([{"index": idx, "delta": {}, "logprobs": None, "finish_reason": choice["finish_reason"]}])
        if include_usage:
            chunk([], usage)
        events.append("data: [DONE]\n\n")
        return FakeResponse(200, "".join(events), content_type="text/event-stream; charset=utf-8")

    # /v1/models ---------------------------------------------------------------------------------
    def _model_objects(self) -> list[dict[str, Any]]:
        names = list(EMBEDDING_MODELS) + list(self.chat_models)
        return [
            {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"} for name in names
        ]

    def _list_models(self, request: FakeRequest, body: Any, record: dict[str, Any]) -> FakeResponse:
        return FakeResponse(200, {"object": "list", "data": self._model_objects()})

    def _get_model(self, request: FakeRequest, body: Any, record: dict[str, Any]) -> FakeResponse:
        name = request.path.rstrip("/")[len("/v1/models/") :]
        for obj in self._model_objects():
            if obj["id"] == name:
                return FakeResponse(200, obj)
        raise _HTTPError(
            404, _error(f"The model '{name}' does not exist", param="model", code="model_not_found")
        )
