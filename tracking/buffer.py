"""The ingest buffer: a Redis stream, with PostgreSQL as the fallback.

`accept()` is called by the ingest view after validation. It checks the site's
and the client's rate and appends the events as one stream entry, in one Redis
round trip (a Lua script, so the check and the append are atomic). If Redis is
unreachable, the events are written straight to PostgreSQL; if that fails too,
`StorageUnavailable` makes the view answer 503 so the client retries. An event
is acknowledged (2xx) only once it sits in Redis (AOF) or in PostgreSQL.

The flusher (`tracking.flush`) drains the stream with a consumer group.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import DatabaseError

from reengage import redis_pool
from tracking.storage import ROWS_FORMAT, encode_rows, store_events

log = logging.getLogger(__name__)

STREAM = "reengage:events"
GROUP = "flusher"
DROPPED = "reengage:dropped"  # hash "<site_id>:<YYYY-MM-DD>:<reason>" → count
RATE_WINDOW = 60  # seconds

# KEYS: site counter, client counter, stream. ARGV: n, site limit, client limit,
# window, payload (staging rows, see tracking.storage.encode_rows), their format. Returns the
# entry id, or "site"/"client" when over the limit.
_APPEND = """
local n = tonumber(ARGV[1])
local site = redis.call('INCRBY', KEYS[1], n)
if site == n then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
if site > tonumber(ARGV[2]) then redis.call('DECRBY', KEYS[1], n) return 'site' end
if tonumber(ARGV[3]) > 0 then
  local client = redis.call('INCRBY', KEYS[2], n)
  if client == n then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
  if client > tonumber(ARGV[3]) then
    redis.call('DECRBY', KEYS[1], n) redis.call('DECRBY', KEYS[2], n) return 'client'
  end
end
return redis.call('XADD', KEYS[3], '*', 'c', ARGV[5], 'n', ARGV[1], 'f', ARGV[6])
"""


class StorageUnavailable(Exception):
    """Neither Redis nor PostgreSQL took the events: the client must retry."""


class LostAcknowledgements:
    """Test-only fault: the next `count` requests whose events were buffered are answered
    503 anyway, as when an answer is lost on its way back. The client retries what is
    already stored, which is what the SDK tests need to prove a retry stores one copy.
    Zero (always, outside tests) costs one attribute read per request."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self.count <= 0:
            return False
        with self._lock:
            if self.count <= 0:
                return False
            self.count -= 1
            return True


LOST_ACKNOWLEDGEMENTS = LostAcknowledgements()


def acknowledgement_lost() -> bool:
    return LOST_ACKNOWLEDGEMENTS.take()


class RateLimited(Exception):
    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(scope)
        self.scope = scope
        self.retry_after = retry_after


_client: redis.Redis | None = None
_client_url: str | None = None
_script = None


def client() -> redis.Redis:
    """One connection pool per process (and per REDIS_URL, for tests)."""
    global _client, _client_url, _script
    if _client is None or _client_url != settings.REDIS_URL:
        _client = redis_pool.client(timeout=settings.INGEST_REDIS_TIMEOUT)
        _client_url = settings.REDIS_URL
        _script = _client.register_script(_APPEND)
    return _client


def client_key(ip: str) -> str:
    """Who a per-client rate limit counts: an IPv4 address, or an IPv6 client's /64
    (one subscriber's network: a single host can pick any of its 2^64 addresses)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip or "-"
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def accept(events: list[dict], *, site_id: int, site_limit: int, client_key: str) -> str:
    """Store events durably enough to acknowledge them. Returns "redis" or "postgres"."""
    if not events:
        return "none"
    payload = encode_rows(events)
    window = int(time.time()) // RATE_WINDOW
    try:
        client()
        result = _script(
            keys=[f"reengage:rate:s:{site_id}:{window}", f"reengage:rate:c:{client_key}:{window}",
                  STREAM],
            args=[len(events), site_limit, settings.INGEST_CLIENT_EVENTS_PER_MINUTE,
                  RATE_WINDOW * 2, payload, ROWS_FORMAT],
        )  # fmt: skip
    except redis.RedisError as exc:
        log.warning("redis unavailable for ingest (%s); writing to PostgreSQL", exc)
        return _fallback(events)
    if result in (b"site", b"client"):
        retry_after = RATE_WINDOW - int(time.time()) % RATE_WINDOW
        raise RateLimited(result.decode(), max(1, retry_after))
    return "redis"


def _fallback(events: list[dict]) -> str:
    try:
        store_events(events, now=datetime.now(UTC))
    except DatabaseError as exc:
        log.error("postgres unavailable too (%s); answering 503", exc)
        raise StorageUnavailable("redis and postgres are both unreachable") from exc
    return "postgres"


def count_dropped(site_id: int, reason: str, n: int, day: str, detail: str = "") -> None:
    """Count input dropped on purpose (bots); best effort, never fails a request.

    `detail` (the bot's user agent) is kept as the site's last drop for that
    reason, so the install page can say why a test did not show up.
    """
    try:
        pipe = client().pipeline(transaction=False)
        pipe.hincrby(DROPPED, f"{site_id}:{day}:{reason}", n)
        _remember(pipe, site_id, reason, detail, n)
        pipe.execute()
    except redis.RedisError:
        log.warning("could not count %d dropped (%s) for site %s", n, reason, site_id)


# The last drop per site and reason: "<site_id>:<reason>" → JSON {at, count, detail}.
# Kept for an hour: the install check answers "did my test arrive?", not history.
LAST_DROPPED = "reengage:dropped:last:"
LAST_DROPPED_SECONDS = 3600
DROP_REASONS = ("bot", "origin")


def _remember(pipe, site_id: int, reason: str, detail: str, n: int) -> None:
    note = {"at": time.time(), "count": n, "detail": detail[:300]}
    pipe.set(f"{LAST_DROPPED}{site_id}:{reason}", json.dumps(note), ex=LAST_DROPPED_SECONDS)


def remember_refused(site_id: int, reason: str, detail: str) -> None:
    """Keep a refused request (a browser on an origin not in the site's domains) for the
    install check; best effort, like count_dropped."""
    try:
        pipe = client().pipeline(transaction=False)
        _remember(pipe, site_id, reason, detail, 1)
        pipe.execute()
    except redis.RedisError:
        log.warning("could not note a refused request (%s) for site %s", reason, site_id)


def last_dropped(site_id: int) -> dict[str, dict]:
    """The site's last drop per reason within the hour: reason → {at (datetime), count, detail}."""
    try:
        values = client().mget([f"{LAST_DROPPED}{site_id}:{reason}" for reason in DROP_REASONS])
    except redis.RedisError:
        return {}
    found = {}
    for reason, value in zip(DROP_REASONS, values, strict=True):
        if value:
            note = json.loads(value)
            note["at"] = datetime.fromtimestamp(note["at"], UTC)
            found[reason] = note
    return found
