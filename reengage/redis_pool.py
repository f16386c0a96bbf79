"""The process's Redis connections: one pool per (REDIS_URL, timeout).

Ingest's buffer, the email rate limit and the health check all take their client
here, so a process holds one connection pool per use, not one per call, and
tests that move REDIS_URL get a new pool.
"""

from __future__ import annotations

import redis
from django.conf import settings

_clients: dict[tuple[str, float], redis.Redis] = {}


def client(*, timeout: float) -> redis.Redis:
    """A client whose calls (and connects) give up after `timeout` seconds."""
    key = (settings.REDIS_URL, timeout)
    found = _clients.get(key)
    if found is None:
        found = _clients[key] = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )
    return found
