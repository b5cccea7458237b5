"""TokPulse automation fleet: domain logic and operator tooling (CLI, embedded services,
migrations). The Celery runtime lives in `workers`, thin task wrappers in `tasks`."""

__version__ = "0.1.0"
