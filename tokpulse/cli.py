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

    r = sub.add_parser("redact", help="redact PII and secrets from FILE or stdin")
    r.add_argument("--strict", action="store_true", help="add the lower-confidence detectors")
    r.add_argument("--json", action="store_true", help="input is one JSON document; output is redact_object of it")
    r.add_argument("file", nargs="?", default=None, help="input file (default: stdin)")
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
