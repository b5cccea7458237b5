#!/bin/sh
# Container healthchecks for the TokPulse fleet image (installed as
# /usr/local/bin/tokpulse-healthcheck). Exit 0 = healthy, anything else = unhealthy.
#
#   tokpulse-healthcheck worker POOL   this container's worker node POOL@$HOSTNAME answers a ping
#   tokpulse-healthcheck beat          Redis answers and a beat holds the RedBeat lock
#   tokpulse-healthcheck flower PORT   Flower's /healthcheck answers (it needs no auth)
#   tokpulse-healthcheck api PORT      the search API's /healthz answers 200 (its database answers)
#
# compose.yaml spells the worker check out inline (celery inspect ping) so the pool name
# is visible there; this script is the same check for `docker run` and for debugging.
set -eu

role="${1:-}"
case "$role" in
  worker)
    pool="${2:?usage: tokpulse-healthcheck worker POOL}"
    # `tokpulse worker --pool X` names its node X@<hostname>; in a container the hostname
    # is the container's, so every replica of a scaled service checks only itself.
    exec celery -A workers.app inspect ping -d "${pool}@${HOSTNAME}" --timeout 10
    ;;
  beat)
    # One active beat: RedBeat keeps the schedule in Redis behind a lock that the active
    # beat renews. The lock key exists while a beat owns the schedule (after a crash it
    # lingers until its timeout, while the restarted beat waits to take it over). If the
    # lock is switched off (redbeat_lock_key = None), Redis answering is all we check.
    exec python - <<'PY'
import sys

from redbeat.schedulers import RedBeatConfig, get_redis

from workers.app import app

key = RedBeatConfig(app).lock_key
client = get_redis(app)
if not client.ping():
    sys.exit("redis does not answer")
if key and not client.exists(key):
    sys.exit(f"no beat holds the schedule lock {key!r}")
PY
    ;;
  flower)
    port="${2:-5555}"
    exec python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${port}/healthcheck', timeout=5).status == 200 else 1)"
    ;;
  api)
    port="${2:-8080}"
    # urlopen raises on a 503 (database down), which exits non-zero: unhealthy.
    exec python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${port}/healthz', timeout=8).status == 200 else 1)"
    ;;
  *)
    echo "usage: tokpulse-healthcheck worker POOL | beat | flower [PORT] | api [PORT]" >&2
    exit 2
    ;;
esac
