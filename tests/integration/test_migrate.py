"""Migrations against a real PostgreSQL with pgvector."""

from __future__ import annotations

import shutil

import psycopg2
import pytest

from tokpulse.migrate import MIGRATIONS_DIR, MigrationError, discover, migrate, status

SPEC_TABLES = {"ai_health_metrics", "ai_embeddings", "ai_usage_metrics", "cost_predictions"}
FLEET_TABLES = {"job_runs", "alerts_outbox", "schema_migrations"}


def _tables(url: str) -> set[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in cur.fetchall()}


def test_fresh_database_gets_every_table_and_rerun_is_a_noop(fresh_database):
    applied = migrate(fresh_database)
    assert applied == [m.name for m in discover()]
    assert SPEC_TABLES | FLEET_TABLES <= _tables(fresh_database)
    assert migrate(fresh_database) == []
    st = status(fresh_database)
    assert st["pending"] == [] and st["applied"] == applied
    with psycopg2.connect(fresh_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM schema_migrations")
        assert cur.fetchone()[0] == len(applied)


def test_embeddings_table_shape(fresh_database):
    migrate(fresh_database)
    from pgvector.psycopg2 import register_vector

    conn = psycopg2.connect(fresh_database)
    register_vector(conn)
    with conn, conn.cursor() as cur:
        ins = ("INSERT INTO ai_embeddings (namespace, content, content_hash, provider, model, dims, embedding) "
               "VALUES (%s, %s, %s, 'local', 'm', 3, %s)")
        cur.execute(ins, ("docs", "How to deploy to production", "h1", [1.0, 0.0, 0.0]))
        cur.execute("SELECT fts @@ plainto_tsquery('english', 'deploying') FROM ai_embeddings")
        assert cur.fetchone()[0] is True
        # content hash is unique per namespace, not globally
        cur.execute(ins, ("other", "x", "h1", [0.0, 1.0, 0.0]))
    with pytest.raises(psycopg2.errors.UniqueViolation), conn, conn.cursor() as cur:
        cur.execute(ins, ("docs", "dup", "h1", [0.0, 1.0, 0.0]))
    with pytest.raises(psycopg2.errors.CheckViolation), conn, conn.cursor() as cur:
        cur.execute(ins.replace("3, %s", "4, %s"), ("docs", "bad dims", "h2", [0.0, 1.0, 0.0]))
    conn.close()


def test_changed_applied_migration_is_refused(fresh_database, tmp_path):
    d = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, d)
    migrate(fresh_database, d)
    first = sorted(d.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(fresh_database, d)


def test_failing_migration_rolls_back_entirely(fresh_database, tmp_path):
    d = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, d)
    (d / "9999_broken.sql").write_text("CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n")
    with pytest.raises(MigrationError, match="9999_broken.sql failed and was rolled back"):
        migrate(fresh_database, d)
    assert "half_done" not in _tables(fresh_database)
    with psycopg2.connect(fresh_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM schema_migrations WHERE version = 9999")
        assert cur.fetchone()[0] == 0


def test_badly_named_migration_file_is_an_error(tmp_path):
    (tmp_path / "init.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNNN_name.sql"):
        discover(tmp_path)
