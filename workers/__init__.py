"""The Celery runtime: app factory, configuration, routing, pools, DB pool, base task."""
