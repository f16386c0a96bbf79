"""`/healthz`: is this instance able to take traffic and do its background work?"""

from __future__ import annotations

import redis
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from reengage import redis_pool

WORKER_PING_TIMEOUT = 1.0


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"database unreachable: {type(exc).__name__}"
    return None


def check_redis() -> str | None:
    try:
        redis_pool.client(timeout=1).ping()
    except redis.RedisError as exc:
        return f"redis unreachable: {type(exc).__name__}"
    return None


def dead_letter_count() -> int:
    from tracking.flush import DEAD_LETTERS

    try:
        return redis_pool.client(timeout=1).xlen(DEAD_LETTERS)
    except redis.RedisError:
        return -1


def check_worker() -> str | None:
    from reengage.celery import app

    try:
        # limit=1 returns as soon as one worker answers.
        replies = app.control.ping(timeout=WORKER_PING_TIMEOUT, limit=1)
    except Exception as exc:
        return f"cannot ask workers: {type(exc).__name__}"
    if not replies:
        return f"no Celery worker answered within {WORKER_PING_TIMEOUT:g}s"
    return None


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": check_database(), "redis": check_redis()}
    # Asking workers goes through the broker; skip it when Redis is down.
    checks["worker"] = check_worker() if checks["redis"] is None else "redis is down"
    down = {name: problem for name, problem in checks.items() if problem}
    body = {
        "status": "down" if down else "ok",
        "checks": {name: problem or "ok" for name, problem in checks.items()},
    }
    if checks["redis"] is None:
        # Events PostgreSQL refused at flush time (kept, bounded, replayable with
        # `flush_events --replay-dead-letters`): not a failure of this instance, but
        # a number to alert on.
        body["dead_letters"] = dead_letter_count()
    if down:
        body["down"] = sorted(down)
    return JsonResponse(body, status=503 if down else 200)
