"""API tokens: created and revoked with the CLI, stored hashed, scoped to namespaces.

A token is `tpk_` + 43 URL-safe characters (256 random bits from `secrets`). It is shown
once, at creation; the database keeps its SHA-256 (hex) and its first 12 characters as a
prefix for listings. With 256 bits of entropy a plain SHA-256 cannot be brute-forced, so
no slow KDF is needed (and verification stays sub-millisecond). Lookup is by hash; the
stored hash is compared again with `hmac.compare_digest` (constant time). A token carries
a list of namespaces it may search (`*` = all); expired or revoked tokens verify as None.
Tokens and their hashes are never logged."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

TOKEN_PREFIX = "tpk_"
_TOKEN_RE = re.compile(r"^tpk_[A-Za-z0-9_-]{43}$")
_TOUCH_EVERY = 60.0  # seconds between last_used_at writes per token


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    prefix: str
    namespaces: list[str]
    created_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def allows(self, namespace: str) -> bool:
        return "*" in self.namespaces or namespace in self.namespaces

    def as_dict(self) -> dict:
        def iso(d):
            return d.isoformat() if d else None

        return {"id": self.id, "name": self.name, "prefix": self.prefix, "namespaces": self.namespaces,
                "created_at": iso(self.created_at), "expires_at": iso(self.expires_at),
                "last_used_at": iso(self.last_used_at), "revoked_at": iso(self.revoked_at)}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_namespaces(namespaces: list[str]) -> list[str]:
    out = []
    for ns in namespaces:
        if not isinstance(ns, str) or not ns.strip() or len(ns) > 200:
            raise TokenError(f"bad namespace {ns!r}: namespaces are non-empty strings of at most 200 characters")
        if ns not in out:
            out.append(ns)
    if not out:
        raise TokenError("a token needs at least one namespace (--namespace NS, repeatable, or --all-namespaces)")
    return out


def create_token(cur, namespaces: list[str], *, name: str = "", expires_days: float | None = None
                 ) -> tuple[str, TokenInfo]:
    """Create a token; returns (the token, shown only now, and its record)."""
    namespaces = _check_namespaces(namespaces)
    if expires_days is not None and not expires_days > 0:
        raise TokenError(f"--expires-days must be positive (got {expires_days})")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    cur.execute(
        "INSERT INTO api_tokens (name, prefix, token_hash, namespaces, expires_at) "
        "VALUES (%s, %s, %s, %s, CASE WHEN %s::float8 IS NULL THEN NULL "
        "ELSE now() + make_interval(secs => %s::float8 * 86400) END) "
        "RETURNING id, created_at, expires_at",
        (name or "", token[:12], hash_token(token), namespaces, expires_days, expires_days),
    )
    tid, created, expires = cur.fetchone()
    return token, TokenInfo(int(tid), name or "", token[:12], namespaces, created, expires)


def list_tokens(cur, *, include_revoked: bool = False) -> list[TokenInfo]:
    cur.execute("SELECT id, name, prefix, namespaces, created_at, expires_at, last_used_at, revoked_at "
                "FROM api_tokens " + ("" if include_revoked else "WHERE revoked_at IS NULL ") + "ORDER BY id")
    return [TokenInfo(int(r[0]), r[1], r[2], list(r[3]), r[4], r[5], r[6], r[7]) for r in cur.fetchall()]


def revoke_token(cur, ident: str) -> list[TokenInfo]:
    """Revoke by id, by prefix (as listed) or by the token itself. Returns what was revoked."""
    ident = ident.strip()
    if ident.isdigit():
        where, arg = "id = %s", int(ident)
    elif _TOKEN_RE.match(ident):
        where, arg = "token_hash = %s", hash_token(ident)
    elif ident.startswith(TOKEN_PREFIX) and len(ident) >= 8:
        where, arg = "prefix = %s", ident[:12]
    else:
        raise TokenError(f"{ident!r} is not a token id, prefix (tpk_...) or token")
    cur.execute(f"SELECT count(*) FROM api_tokens WHERE {where} AND revoked_at IS NULL", (arg,))
    if cur.fetchone()[0] > 1:
        raise TokenError(f"{ident!r} matches several tokens; revoke by id (tokpulse token list)")
    cur.execute(f"UPDATE api_tokens SET revoked_at = now() WHERE {where} AND revoked_at IS NULL "
                "RETURNING id, name, prefix, namespaces, created_at, expires_at, last_used_at, revoked_at", (arg,))
    return [TokenInfo(int(r[0]), r[1], r[2], list(r[3]), r[4], r[5], r[6], r[7]) for r in cur.fetchall()]


class TokenVerifier:
    """Checks bearer tokens against the table (each request: one indexed lookup)."""

    def __init__(self) -> None:
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()

    def verify(self, token: str | None) -> TokenInfo | None:
        if not token or not _TOKEN_RE.match(token):
            return None
        from workers import db

        digest = hash_token(token)
        with db.transaction() as cur:
            cur.execute("SELECT id, name, prefix, namespaces, token_hash, created_at, expires_at "
                        "FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL "
                        "AND (expires_at IS NULL OR expires_at > now())", (digest,))
            row = cur.fetchone()
            if row is None or not hmac.compare_digest(row[4], digest):
                return None
            info = TokenInfo(int(row[0]), row[1], row[2], list(row[3]), row[5], row[6])
            now = time.monotonic()
            with self._lock:
                due = now - self._touched.get(info.id, -1e9) >= _TOUCH_EVERY
                if due:
                    self._touched[info.id] = now
            if due:
                cur.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = %s", (info.id,))
        return info
