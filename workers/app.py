"""The Celery application. `celery -A workers.app worker -Q <queue>` works as well as
`tokpulse worker --pool <name>`.

Broker and backend come from REDIS_URL (set by `tokpulse` when it runs the embedded
default, or by the operator); without it, the app attaches to embedded services already
running under TOKPULSE_HOME."""

from __future__ import annotations

import logging
import os
import sys

from celery import Celery, signals
from kombu import Queue

from tokpulse.settings import ConfigError, Settings, load_settings
from workers.pools import DEFAULT_QUEUE, POOLS, VISIBILITY_TIMEOUT, pool_for_queue
from workers.routing import TASK_ROUTES, check_routes

log = logging.getLogger(__name__)

TASK_MODULES = ["tasks.health", "tasks.maintenance", "tasks.redaction", "tasks.embeddings"]


def _urls(settings: Settings) -> tuple[str, str | None]:
    if settings.redis_url:
        return settings.redis_url, settings.database_url
    from tokpulse.embedded import resolve_urls

    urls, _ = resolve_urls(settings, start=False)
    if urls is None:
        raise ConfigError(
            "REDIS_URL",
            f"not set and no embedded services are running under {settings.home} "
            "(run `tokpulse up` or `tokpulse services`, or set REDIS_URL and DATABASE_URL)",
        )
    os.environ.setdefault("DATABASE_URL", urls.database_url)
    return urls.redis_url, urls.database_url


def celery_config(settings: Settings, redis_url: str) -> dict:
    from beat_schedule import build_schedule

    transport = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        # Fail fast when Redis is down instead of hanging a publisher forever.
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "retry_on_timeout": True,
        "health_check_interval": 25,
    }
    return {
        "broker_url": redis_url,
        "result_backend": redis_url,
        # JSON only: a pickled message is refused by the worker and never executed.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "timezone": "UTC",
        "enable_utc": True,
        "task_default_queue": DEFAULT_QUEUE,
        "task_queues": [Queue(p.queue, routing_key=p.queue) for p in POOLS.values()],
        "task_routes": TASK_ROUTES,
        "task_create_missing_queues": False,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        # Not result_extended: it would copy every task's arguments (for the redaction
        # jobs: the personal data itself) into the result backend.
        "result_extended": False,
        "result_expires": 7 * 24 * 3600,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "broker_connection_retry_on_startup": True,
        "worker_max_tasks_per_child": 500,
        "worker_lost_wait": 20,
        "worker_hijack_root_logger": True,
        # Beat: RedBeat keeps the schedule in Redis behind a lock, so only one beat is
        # active however many are started; the others wait for the lock.
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "redbeat_redis_url": redis_url,
        "redbeat_key_prefix": "tokpulse:redbeat:",
        "redbeat_lock_key": "tokpulse:redbeat::lock",
        "redbeat_lock_timeout": 60,
        "beat_max_loop_interval": 10,
        "beat_schedule": build_schedule(settings.agent.features),
    }


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    check_routes()
    redis_url, _ = _urls(settings)
    app = Celery("tokpulse", include=TASK_MODULES)
    app.conf.update(celery_config(settings, redis_url))
    return app


@signals.worker_process_init.connect
def _open_db_pool(**_: object) -> None:
    from workers import db

    pool = os.environ.get("TOKPULSE_POOL", "default")
    spec = POOLS.get(pool)
    db.close_pool()  # whatever was inherited belongs to the parent
    try:
        db.init_pool(maxconn=2, application_name=f"tokpulse-{pool}")
    except Exception as exc:  # noqa: BLE001 - the pool is created lazily on first use too
        log.warning("DB pool for %s not opened at start: %s", spec.name if spec else pool, type(exc).__name__)


@signals.worker_init.connect
def _preload_ai(**_: object) -> None:
    # Pools that call the AI gateway import it (openai SDK, cl100k vocabulary: 2-3 s) once
    # in the parent, before the prefork children are forked, so no task pays for it.
    # Importing opens no connection, so sharing the modules across fork is safe.
    if os.environ.get("TOKPULSE_POOL") in ("ai", "embeddings"):
        try:
            import tokpulse.ai.client  # noqa: F401
            from tokpulse.ai.tokens import count_tokens

            count_tokens("warm up")
        except Exception as exc:  # noqa: BLE001 - the first task will report it properly
            log.warning("AI gateway preload failed: %s", type(exc).__name__)


@signals.worker_process_shutdown.connect
def _close_db_pool(**_: object) -> None:
    from workers import db

    db.close_pool()


@signals.celeryd_after_setup.connect
def _name_pool(sender: str, instance, **_: object) -> None:
    # Plain `celery -A workers.app worker -Q watchers` also knows which pool it is.
    if "TOKPULSE_POOL" not in os.environ:
        queues = [q.name for q in instance.app.amqp.queues.consume_from.values()]
        pool = next((pool_for_queue(q) for q in queues if pool_for_queue(q)), None)
        if pool:
            os.environ["TOKPULSE_POOL"] = pool


try:
    app = create_app()
except ConfigError as _exc:
    print(f"tokpulse: config error: {_exc}", file=sys.stderr)
    raise SystemExit(2) from None
