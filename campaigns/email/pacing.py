"""How fast the sender may go: rate limits, pauses after a 429, and per-site concurrency.

- **Rate limits** count sends in a fixed one-minute window in Redis, shared by every
  worker: the site's `EmailSettings.sends_per_minute` (the admin's sending policy) and,
  when `EMAIL_ESP_SENDS_PER_MINUTE` is set, the whole ESP account's. One Lua script
  takes from both windows at once, so neither is ever exceeded and neither is spent for
  sends the other refused.
- **Pauses**: an ESP answering 429 with `Retry-After` pauses the site until then, in a
  Redis hash every worker reads before it claims (and in this process's memory, should
  Redis be unreachable).
- **Concurrency**: how many of a site's emails this process has in flight at once,
  `EMAIL_SEND_SITE_CONCURRENCY` at most, halved by every 429 and grown back by one
  after as many successes in a row as the current limit (additive increase,
  multiplicative decrease, as TCP does), so a site the ESP throttles settles just
  under the ESP's limit instead of hammering it.
- **What the admin shows**: emails sent per minute (a Redis counter per minute) and
  the queue.

Time is always a parameter (`now`), never read here, so tests move the clock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import redis
from django.conf import settings

from reengage import redis_pool

log = logging.getLogger(__name__)

PAUSED_KEY = "reengage:email:paused"
# Retry-After values beyond this are taken as this (a broken header must not stop a site
# for a day); 5xx and 429 without the header use the retry backoff instead.
MAX_PAUSE_SECONDS = 3600


def _redis() -> redis.Redis:
    return redis_pool.client(timeout=2)


def window_of(now: datetime) -> int:
    return int(now.timestamp() // 60)


def next_window(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


# --- rate limits ----------------------------------------------------------------------

# KEYS: site window, ESP window. ARGV: wanted, site limit, ESP limit (0: none).
_RESERVE = """
local want = tonumber(ARGV[1])
local grant = math.min(want, tonumber(ARGV[2]) - tonumber(redis.call('GET', KEYS[1]) or '0'))
local esp_limit = tonumber(ARGV[3])
if esp_limit > 0 then
    grant = math.min(grant, esp_limit - tonumber(redis.call('GET', KEYS[2]) or '0'))
end
if grant <= 0 then return 0 end
redis.call('INCRBY', KEYS[1], grant)
redis.call('EXPIRE', KEYS[1], 120)
if esp_limit > 0 then
    redis.call('INCRBY', KEYS[2], grant)
    redis.call('EXPIRE', KEYS[2], 120)
end
return grant
"""


def reserve_sends(site_id: int, per_minute: int, now: datetime, want: int) -> int:
    """Take up to `want` sends from the site's (and the ESP's) current one-minute window,
    shared by every worker through Redis; returns how many were granted (0: used up)."""
    window = window_of(now)
    keys = [f"reengage:email:rate:{site_id}:{window}", f"reengage:email:rate:esp:{window}"]
    esp_limit = settings.EMAIL_ESP_SENDS_PER_MINUTE
    return int(_redis().eval(_RESERVE, 2, *keys, want, per_minute, esp_limit))


# --- pauses (429 Retry-After) -----------------------------------------------------------


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_PAUSE_SECONDS)


_local_pauses: dict[int, float] = {}
_lock = threading.Lock()


def pause_site(site_id: int, until: datetime) -> None:
    """No worker claims this site's emails before `until` (a later pause wins)."""
    stamp = until.timestamp()
    with _lock:
        _local_pauses[site_id] = max(stamp, _local_pauses.get(site_id, 0.0))
    try:
        client = _redis()
        current = client.hget(PAUSED_KEY, str(site_id))
        if current is None or float(current) < stamp:
            client.hset(PAUSED_KEY, str(site_id), repr(stamp))
    except redis.RedisError:
        log.warning("Redis unavailable: site %s paused in this process only", site_id)


def paused_sites(now: datetime) -> dict[int, datetime]:
    """Sites no worker may send for now, with when each may resume."""
    stamp = now.timestamp()
    found: dict[int, float] = {}
    try:
        client = _redis()
        expired = []
        for raw_site, raw_until in client.hgetall(PAUSED_KEY).items():
            until = float(raw_until)
            if until > stamp:
                found[int(raw_site)] = until
            else:
                expired.append(raw_site)
        if expired:
            client.hdel(PAUSED_KEY, *expired)
    except redis.RedisError:
        log.warning("Redis unavailable: only this process's site pauses apply")
    with _lock:
        for site_id, until in _local_pauses.items():
            if until > stamp:
                found[site_id] = max(until, found.get(site_id, 0.0))
    return {site_id: datetime.fromtimestamp(until, tz=UTC) for site_id, until in found.items()}


# --- per-site concurrency (this process) -------------------------------------------------


@dataclass
class SiteLimit:
    limit: int
    successes: int = 0


_site_limits: dict[int, SiteLimit] = {}


def site_cap(concurrency: int | None = None) -> int:
    """The most of one site's emails in flight: EMAIL_SEND_SITE_CONCURRENCY, or (0) the
    process's whole concurrency."""
    return settings.EMAIL_SEND_SITE_CONCURRENCY or concurrency or settings.EMAIL_SEND_CONCURRENCY


def site_concurrency(site_id: int, concurrency: int | None = None) -> int:
    """How many of this site's emails this process may have in flight now."""
    cap = site_cap(concurrency)
    with _lock:
        found = _site_limits.get(site_id)
        return cap if found is None else min(found.limit, cap)


def throttled(site_id: int, concurrency: int | None = None) -> int:
    """The ESP said 429: halve the site's concurrency (at least one). Returns the new limit."""
    cap = site_cap(concurrency)
    with _lock:
        found = _site_limits.setdefault(site_id, SiteLimit(cap))
        found.limit = max(1, min(found.limit, cap) // 2)
        found.successes = 0
        return found.limit


def succeeded(site_id: int, concurrency: int | None = None) -> None:
    """One email accepted: after `limit` in a row, allow one more in flight (up to the cap)."""
    cap = site_cap(concurrency)
    with _lock:
        found = _site_limits.get(site_id)
        if found is None:
            return
        found.successes += 1
        if found.successes >= found.limit:
            found.successes = 0
            found.limit += 1
            if found.limit >= cap:
                del _site_limits[site_id]  # back to the cap: nothing to remember


def reset(site_id: int | None = None) -> None:
    """Forget pauses and adaptive limits (all sites, or one): for tests and operators."""
    with _lock:
        for store in (_site_limits, _local_pauses):
            if site_id is None:
                store.clear()
            else:
                store.pop(site_id, None)
    try:
        if site_id is None:
            _redis().delete(PAUSED_KEY)
        else:
            _redis().hdel(PAUSED_KEY, str(site_id))
    except redis.RedisError:
        pass


# --- what the admin shows ----------------------------------------------------------------


def count_sent(site_counts: dict[int, int], now: datetime) -> None:
    """Add to the per-minute sent counters the admin's send rate reads (best effort)."""
    if not site_counts:
        return
    window = window_of(now)
    try:
        pipe = _redis().pipeline(transaction=False)
        for site_id, count in site_counts.items():
            for key in (
                f"reengage:email:sent:{site_id}:{window}",
                f"reengage:email:sent:all:{window}",
            ):
                pipe.incrby(key, count)
                pipe.expire(key, 180)
        pipe.execute()
    except redis.RedisError:
        log.warning("Redis unavailable: the admin's send rate will read low")


def sent_last_minute(now: datetime, site_id: int | None = None) -> int | None:
    """Emails sent in the last full minute plus this one so far (None: Redis unavailable)."""
    window = window_of(now)
    name = "all" if site_id is None else str(site_id)
    try:
        values = _redis().mget(
            f"reengage:email:sent:{name}:{window - 1}", f"reengage:email:sent:{name}:{window}"
        )
    except redis.RedisError:
        return None
    previous, current = (int(v or 0) for v in values)
    # The last 60 s: this minute so far plus the part of the previous one still inside.
    elapsed = now.second + now.microsecond / 1e6
    return round(current + previous * (60 - elapsed) / 60)


def outbox_summary(now: datetime) -> str:
    """The outbox at a glance, for the admin: what waits, what is being sent, how fast."""
    from django.db.models import Q

    from campaigns.models import Message

    queued = Message.objects.filter(status=Message.Status.QUEUED)
    waiting = bounded_count(queued)
    due = bounded_count(queued.filter(Q(not_before__isnull=True) | Q(not_before__lte=now)))
    sending = bounded_count(Message.objects.filter(status=Message.Status.SENDING))
    rate = sent_last_minute(now)
    parts = [
        f"{waiting} queued ({due} due now)",
        f"{sending} sending",
        "sent in the last minute: unknown (Redis unavailable)"
        if rate is None
        else f"{rate:,} sent in the last minute",
    ]
    paused = paused_sites(now)
    if paused:
        parts.append(f"{len(paused)} site(s) paused by the ESP (429)")
    return " · ".join(parts)


COUNT_UP_TO = 100_000


def bounded_count(queryset) -> str:
    """A count that stops at COUNT_UP_TO ("100,000+"): the admin page must not scan a
    huge outbox to say how big it is."""
    found = queryset.order_by()[: COUNT_UP_TO + 1].count()
    return f"{COUNT_UP_TO:,}+" if found > COUNT_UP_TO else f"{found:,}"
