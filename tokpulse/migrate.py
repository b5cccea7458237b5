"""Versioned SQL migrations: `tokpulse/migrations/NNNN_name.sql`, applied in order, each in
its own transaction, recorded in `schema_migrations` with a checksum. Re-running is a
no-op; an applied file that changed is an error (write a new migration instead)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_KEY = 7_261_905_101  # pg_advisory_lock key: one migrator at a time per database
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), path.stem, path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


def applied(conn) -> dict[int, tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return {}
        cur.execute("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        return {v: (n, c) for v, n, c in cur.fetchall()}


def migrate(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    migrations = discover(directory)
    conn = psycopg2.connect(database_url, application_name="tokpulse-migrate")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            cur.execute(_BOOKKEEPING)
        try:
            done = applied(conn)
            newly: list[str] = []
            for mig in migrations:
                if mig.version in done:
                    name, checksum = done[mig.version]
                    if checksum != mig.checksum:
                        raise MigrationError(
                            f"{mig.name}.sql changed after it was applied (checksum mismatch); "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                conn.autocommit = False
                try:
                    with conn.cursor() as cur:
                        cur.execute(mig.sql)
                        cur.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (mig.version, mig.name, mig.checksum),
                        )
                    conn.commit()
                except psycopg2.Error as exc:
                    conn.rollback()
                    first = (exc.pgerror or str(exc)).strip().splitlines()[0]
                    raise MigrationError(f"{mig.name}.sql failed and was rolled back: {first}") from None
                finally:
                    conn.autocommit = True
                newly.append(mig.name)
            return newly
        finally:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    finally:
        conn.close()


def status(database_url: str) -> dict:
    """Applied and pending migration names."""
    conn = psycopg2.connect(database_url, application_name="tokpulse-status", connect_timeout=5)
    try:
        done = applied(conn)
    finally:
        conn.close()
    all_m = discover()
    return {
        "applied": [m.name for m in all_m if m.version in done],
        "pending": [m.name for m in all_m if m.version not in done],
    }


def cmd_migrate(args, settings) -> int:
    import sys

    from tokpulse.embedded import resolve_urls

    urls, svc = resolve_urls(settings, start=True)
    try:
        try:
            names = migrate(urls.database_url)
        except (MigrationError, psycopg2.OperationalError) as exc:
            print(f"tokpulse migrate: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
            return 1
        print("applied: " + ", ".join(names) if names else "schema up to date")
        return 0
    finally:
        if svc is not None:
            svc.stop()
