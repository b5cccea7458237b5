"""`tokpulse token create|list|revoke`: bearer tokens for the search API.

    tokpulse token create --namespace docs [--namespace code] [--name ci] [--expires-days 90]
    tokpulse token create --all-namespaces --name ops
    tokpulse token list [--all] [--json]
    tokpulse token revoke 3            # by id, by prefix (tpk_xxxxxxxx) or by the token itself

The token is printed once, at creation; only its SHA-256 is stored."""

from __future__ import annotations

import json
import sys

from tokpulse.settings import Settings


def cmd_token(args, settings: Settings) -> int:
    from tokpulse.api.tokens import TokenError, create_token, list_tokens, revoke_token
    from tokpulse.embeddings.cli import _connect
    from workers import db

    svc = _connect(settings)
    try:
        with db.transaction() as cur:
            cur.execute("SELECT to_regclass('api_tokens') IS NOT NULL")
            if not cur.fetchone()[0]:
                print("tokpulse token: the api_tokens table is missing; run `tokpulse migrate` first",
                      file=sys.stderr)
                return 1
        try:
            if args.token_command == "create":
                namespaces = ["*"] if args.all_namespaces else list(args.namespace or [])
                with db.transaction() as cur:
                    token, info = create_token(cur, namespaces, name=args.name or "", expires_days=args.expires_days)
                if args.json:
                    print(json.dumps({"token": token, **info.as_dict()}, indent=2))
                else:
                    scope = "every namespace" if "*" in info.namespaces else ", ".join(info.namespaces)
                    print(f"token: {token}")
                    print(f"id {info.id}, prefix {info.prefix}, namespaces: {scope}"
                          + (f", expires {info.expires_at:%Y-%m-%d %H:%M} UTC" if info.expires_at else ""))
                    print("This is the only time the token is shown; only its hash is stored.", file=sys.stderr)
                return 0
            if args.token_command == "list":
                with db.transaction() as cur:
                    tokens = list_tokens(cur, include_revoked=args.all)
                if args.json:
                    print(json.dumps([t.as_dict() for t in tokens], indent=2))
                    return 0
                if not tokens:
                    print("no tokens (create one: tokpulse token create --namespace NS)")
                    return 0
                print(f"{'id':>4}  {'prefix':<13}{'name':<16}{'namespaces':<28}{'last used':<18}state")
                for t in tokens:
                    state = "revoked" if t.revoked_at else (f"expires {t.expires_at:%Y-%m-%d}" if t.expires_at
                                                            else "active")
                    used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
                    print(f"{t.id:>4}  {t.prefix:<13}{t.name[:15]:<16}{','.join(t.namespaces)[:27]:<28}{used:<18}"
                          f"{state}")
                return 0
            with db.transaction() as cur:
                revoked = revoke_token(cur, args.ident)
            if not revoked:
                print(f"tokpulse token: no active token matches {args.ident!r} (see tokpulse token list)",
                      file=sys.stderr)
                return 1
            for t in revoked:
                print(f"revoked token {t.id} ({t.prefix}{', ' + t.name if t.name else ''})")
            return 0
        except TokenError as exc:
            print(f"tokpulse token: {exc}", file=sys.stderr)
            return 2
    finally:
        if svc is not None:
            svc.stop()
