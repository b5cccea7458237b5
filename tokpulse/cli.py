"""`tokpulse`: the operator's command line.

Every command loads and validates configuration first; a bad value prints one line
naming it and exits 2 before anything starts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tokpulse.settings import ConfigError, Settings, load_settings
from workers.pools import POOLS

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokpulse", description="TokPulse AI-ops automation fleet")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole fleet: embedded services if needed, migrate, beat, pools, Flower")
    up.add_argument("--pools", default=",".join(POOLS), help="comma-separated pools to start (default: all)")
    up.add_argument("--concurrency", type=int, default=None, help="override every pool's concurrency")
    up.add_argument("--no-flower", action="store_true", help="do not start Flower")
    up.add_argument("--no-beat", action="store_true", help="do not start beat")
    up.add_argument("--no-api", action="store_true", help="do not start the search API (tokpulse api)")

    sub.add_parser("migrate", help="apply pending SQL migrations (idempotent)")

    w = sub.add_parser("worker", help="start one worker pool")
    w.add_argument("--pool", required=True, choices=sorted(POOLS), help="the pool to run")
    w.add_argument("--concurrency", type=int, default=None, help="override the pool's concurrency")
    w.add_argument("--hostname", default=None, help="worker node name (default: <pool>@<host>)")

    sub.add_parser("beat", help="start the scheduler (one active at a time, Redis lock)")

    f = sub.add_parser("flower", help="start Flower (basic auth, loopback unless TOKPULSE_BIND)")
    f.add_argument("--port", type=int, default=None)

    st = sub.add_parser("status", help="services, migrations and pool health")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each pool's ping")

    sub.add_parser("services", help="start the embedded Postgres and Redis and wait (no workers)")

    e = sub.add_parser("embed", help="embed files into a namespace (PATH NAMESPACE), or `embed refresh NAMESPACE`",
                       description="Embed Markdown, text, reST, HTML and code under PATH into NAMESPACE; "
                                   "`tokpulse embed refresh NAMESPACE` re-reads the namespace's recorded paths, "
                                   "embeds what changed and deletes chunks whose source text is gone.")
    e.add_argument("path", metavar="PATH|refresh", help="file or directory to embed, or the word `refresh`")
    e.add_argument("namespace", metavar="NAMESPACE")
    e.add_argument("--dry-run", action="store_true", help="report what would be embedded and its estimated cost")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--max-file-bytes", type=int, default=1024 * 1024, help="skip larger files (default 1 MiB)")
    e.add_argument("--chunk-tokens", type=int, default=200, help="token budget per chunk (default 200)")
    e.add_argument("--overlap-tokens", type=int, default=30, help="overlap between chunks of a section (default 30)")
    e.add_argument("--batch-size", type=int, default=512, help="chunks per embedding batch (default 512)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("search", help="hybrid semantic search in a namespace")
    s.add_argument("query", metavar="QUERY")
    s.add_argument("--namespace", "-n", required=True, help="namespace to search")
    s.add_argument("--limit", type=int, default=10, help="results (1-100, default 10)")
    s.add_argument("--threshold", type=float, default=None, help="minimum cosine similarity of vector matches")
    s.add_argument("--no-hybrid", action="store_true", help="vector similarity only (no keyword side)")
    s.add_argument("--json", action="store_true", help="print the response as JSON")

    a = sub.add_parser("api", help="the search HTTP API (POST /search, bearer tokens)")
    a.add_argument("--port", type=int, default=None, help="port (default: chosen once, kept in ports.json)")

    t = sub.add_parser("token", help="create, list and revoke search API tokens")
    tsub = t.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    tc = tsub.add_parser("create", help="create a token (printed once)")
    tc.add_argument("--namespace", action="append", help="namespace the token may search (repeatable)")
    tc.add_argument("--all-namespaces", action="store_true", help="the token may search every namespace")
    tc.add_argument("--name", default="", help="a label for listings")
    tc.add_argument("--expires-days", type=float, default=None, help="expire after this many days")
    tc.add_argument("--json", action="store_true")
    tl = tsub.add_parser("list", help="list tokens (never the tokens themselves)")
    tl.add_argument("--all", action="store_true", help="include revoked tokens")
    tl.add_argument("--json", action="store_true")
    tr = tsub.add_parser("revoke", help="revoke a token by id, prefix or value")
    tr.add_argument("ident", metavar="ID|PREFIX|TOKEN")

    r = sub.add_parser("redact", help="redact PII and secrets from FILE or stdin")
    r.add_argument("--strict", action="store_true", help="add the lower-confidence detectors")
    r.add_argument("--json", action="store_true", help="input is one JSON document; output is redact_object of it")
    r.add_argument("file", nargs="?", default=None, help="input file (default: stdin)")

    u = sub.add_parser("usage", help="AI usage and cost per provider and model, from the ledger")
    u.add_argument("--since", default=None,
                   help="7d, 24h, 30m, 2w or an ISO date/time (default: start of this month, UTC)")
    u.add_argument("--json", action="store_true", help="machine-readable output (a list of rows)")
    return p


def _handler(command: str) -> Callable[[argparse.Namespace, Settings], int]:
    # Imported lazily: `tokpulse redact` must not pay for Celery, and a config error
    # must be reported before heavy imports.
    if command == "up":
        from tokpulse.supervisor import cmd_up as h
    elif command == "migrate":
        from tokpulse.migrate import cmd_migrate as h
    elif command == "worker":
        from tokpulse.runners import cmd_worker as h
    elif command == "beat":
        from tokpulse.runners import cmd_beat as h
    elif command == "flower":
        from tokpulse.runners import cmd_flower as h
    elif command == "status":
        from tokpulse.status import cmd_status as h
    elif command == "services":
        from tokpulse.runners import cmd_services as h
    elif command == "redact":
        from tokpulse.privacy.cli import cmd_redact as h
    elif command == "embed":
        from tokpulse.embeddings.cli import cmd_embed as h
    elif command == "search":
        from tokpulse.embeddings.cli import cmd_search as h
    elif command == "api":
        from tokpulse.api.server import cmd_api as h
    elif command == "token":
        from tokpulse.api.cli import cmd_token as h
    elif command == "usage":
        from tokpulse.ai.usage_cli import cmd_usage as h
    else:  # pragma: no cover - argparse restricts choices
        raise SystemExit(f"unknown command {command}")
    return h


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return int(_handler(args.command)(args, settings) or 0)
    except ConfigError as exc:
        print(f"tokpulse: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
