"""Thin Celery tasks by domain. Each unpacks primitives, calls a plain function, returns
JSON. Names are the constants in `workers.names`."""
