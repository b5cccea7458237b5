"""Embedded Postgres+pgvector and Redis under a home: reuse, persistence, isolation."""

from __future__ import annotations

import json

import psycopg2
import redis

from tokpulse.embedded import EmbeddedServices


def test_two_homes_do_not_collide_and_data_survives_restart(tmp_path):
    a, b = EmbeddedServices(tmp_path / "a"), EmbeddedServices(tmp_path / "b")
    try:
        ua, ub = a.ensure_started(), b.ensure_started()
        assert ua.database_url != ub.database_url and ua.redis_url != ub.redis_url
        ports_a = json.loads((tmp_path / "a" / "ports.json").read_text())
        assert f":{ports_a['postgres']}/" in ua.database_url and str(ports_a["redis"]) in ua.redis_url
        for u in (ua, ub):
            assert "127.0.0.1" in u.database_url and "127.0.0.1" in u.redis_url

        redis.Redis.from_url(ua.redis_url).set("survives", "yes")
        with psycopg2.connect(ua.database_url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE keepme (v text); INSERT INTO keepme VALUES ('row')")
        conn.close()
        redis.Redis.from_url(ub.redis_url).set("survives", "other-home")

        # another process attaches without owning; only the owner stops them
        attached = EmbeddedServices(tmp_path / "a")
        assert attached.running_urls() == ua
        attached.stop()
        assert a.running_urls() == ua

        a.stop()
        assert a.running_urls() is None
        assert b.running_urls() == ub, "stopping one home must not touch another"

        again = EmbeddedServices(tmp_path / "a")
        ua2 = again.ensure_started()
        assert ua2 == ua, "ports recorded in the home are reused"
        assert redis.Redis.from_url(ua2.redis_url).get("survives") == b"yes"
        with psycopg2.connect(ua2.database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT v FROM keepme")
            assert cur.fetchone() == ("row",)
        conn.close()
        again.stop()
    finally:
        a.stop(force_all=True)
        b.stop(force_all=True)
    assert a.running_urls() is None and b.running_urls() is None


def test_pgvector_is_available(database_url):
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        major, minor = (int(x) for x in cur.fetchone()[0].split(".")[:2])
        assert (major, minor) >= (0, 8)
        cur.execute("SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector")
        assert abs(cur.fetchone()[0] - 1.0) < 1e-9
    conn.close()
