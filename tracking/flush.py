"""Drain the Redis event stream into PostgreSQL.

One pass reads up to `max_events` worth of stream entries with a consumer
group, stores them with `tracking.storage.store_events` (one transaction) and
only then acknowledges and deletes the entries. A flusher killed mid-batch
leaves its entries pending; the next pass reclaims them (its own at once,
another consumer's once idle for FLUSH_CLAIM_IDLE_MS) and the dedupe keys make the
replay harmless. Nothing acknowledged to a client is ever dropped:

- PostgreSQL down: the pass fails, the entries stay pending and are retried.
- An entry PostgreSQL refuses (it should not: ingest validates), after bisecting
  the batch to find it, is moved to the dead-letter stream `reengage:events:dead`
  with the error, logged, and shown by `manage.py flush --dead-letters`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, InternalError

from tracking import buffer
from tracking.storage import ROWS_FORMAT, encode_rows, store_rows, upgrade_rows

log = logging.getLogger(__name__)

DEAD_LETTERS = "reengage:events:dead"
LOCK_KEY = "reengage:flush:lock"
READ_CHUNK = 500  # stream entries per XREADGROUP, at most
FIRST_READ = 10


@dataclass
class FlushResult:
    entries: int = 0
    events: int = 0
    stored: int = 0
    dead_letters: int = 0
    errors: list[str] = field(default_factory=list)


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(buffer.STREAM, buffer.GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass
class StreamEntry:
    """One stream entry: the events of one accepted request, as staging rows."""

    id: bytes
    rows: bytes
    count: int

    @property
    def fields(self) -> dict:
        return {"c": self.rows, "n": self.count, "f": ROWS_FORMAT}


def _entry(entry_id: bytes, fields: dict) -> StreamEntry:
    if b"c" in fields:
        rows = fields[b"c"]
        if int(fields.get(b"f", 1)) < ROWS_FORMAT:
            rows = upgrade_rows(rows)  # written by a version before `dedupe_at`
        return StreamEntry(entry_id, rows, int(fields[b"n"]))
    # Written by a version before staging rows (JSON envelopes): still flushed.
    events = json.loads(fields[b"e"])
    return StreamEntry(entry_id, encode_rows(events), len(events))


def _read(client: redis.Redis, consumer: str, max_events: int) -> list[StreamEntry]:
    def parsed(entries) -> list[StreamEntry]:
        return [_entry(entry_id, fields) for entry_id, fields in entries if fields]

    # 1. entries this consumer read before and did not acknowledge (a failed pass; this
    #    and 2 are replays, taken READ_CHUNK entries at a time);
    own = client.xreadgroup(buffer.GROUP, consumer, {buffer.STREAM: "0"}, count=READ_CHUNK)
    entries = parsed(own[0][1] if own else [])
    if entries:
        return entries
    # 2. entries of a consumer that died (idle too long);
    claimed = client.xautoclaim(
        buffer.STREAM,
        buffer.GROUP,
        consumer,
        settings.FLUSH_CLAIM_IDLE_MS,
        start_id="0-0",
        count=READ_CHUNK,
    )
    entries = parsed(claimed[1])
    if entries:
        return entries
    # 3. new entries, until the pass holds about max_events. Entries hold 1 to 500 events:
    #    a small first read tells their size, the next ones ask for what should fit.
    events, count = 0, min(FIRST_READ, max_events)
    while count > 0:
        fresh = client.xreadgroup(buffer.GROUP, consumer, {buffer.STREAM: ">"}, count=count)
        got = parsed(fresh[0][1] if fresh else [])
        entries += got
        events += sum(e.count for e in got)
        if len(got) < count:
            break
        per_entry = -(-events // len(entries))  # ceiling
        count = min(READ_CHUNK, (max_events - events) // per_entry)
    return entries


def _acknowledge(client: redis.Redis, entry_ids: list[bytes]) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.xack(buffer.STREAM, buffer.GROUP, *entry_ids)
    pipe.xdel(buffer.STREAM, *entry_ids)
    pipe.execute()


def _store_or_isolate(
    client: redis.Redis, entries: list[StreamEntry], now: datetime, result: FlushResult
) -> None:
    """Store the entries; if PostgreSQL refuses their data, bisect to find the bad ones."""
    try:
        stored = store_rows([e.rows for e in entries], sum(e.count for e in entries), now=now)
    except (DataError, IntegrityError, InternalError) as exc:
        if len(entries) == 1:
            entry = entries[0]
            log.error("dead-lettering stream entry %s: %s", entry.id, exc)
            pipe = client.pipeline(transaction=True)
            # Bounded (FLUSH_DEAD_LETTERS_MAX, approximate trimming): a stream of poison
            # entries cannot fill Redis; /healthz shows the count so it is noticed.
            pipe.xadd(
                DEAD_LETTERS,
                {**entry.fields, "error": str(exc)[:2000], "entry": entry.id},
                maxlen=settings.FLUSH_DEAD_LETTERS_MAX,
                approximate=True,
            )
            pipe.xack(buffer.STREAM, buffer.GROUP, entry.id)
            pipe.xdel(buffer.STREAM, entry.id)
            pipe.execute()
            result.dead_letters += 1
            return
        middle = len(entries) // 2
        _store_or_isolate(client, entries[:middle], now, result)
        _store_or_isolate(client, entries[middle:], now, result)
        return
    if settings.FAULT_FLUSH_PAUSE_BEFORE_ACK:
        # Fault injection for tests: committed but not yet acknowledged.
        print(f"flush: committed {stored.stored} events, pausing before ack", flush=True)
        time.sleep(settings.FAULT_FLUSH_PAUSE_BEFORE_ACK)
    _acknowledge(client, [e.id for e in entries])
    result.stored += stored.stored


def flush_once(*, max_events: int | None = None, now: datetime | None = None) -> FlushResult:
    """One pass (one transaction) of about `max_events` (FLUSH_PASS_EVENTS): read,
    store, acknowledge. Raises if Redis or PostgreSQL is down."""
    max_events = max_events or settings.FLUSH_PASS_EVENTS
    client = buffer.client()
    ensure_group(client)
    result = FlushResult()
    entries = _read(client, consumer_name(), max_events)
    if not entries:
        return result
    result.entries = len(entries)
    result.events = sum(e.count for e in entries)
    _store_or_isolate(client, entries, now or datetime.now(UTC), result)
    return result


def flush_until_empty(
    *, budget_seconds: float = 20.0, max_events: int | None = None
) -> FlushResult:
    """Flush pass after pass until the stream is drained or the time budget is spent.

    A Redis lock keeps one flusher at a time (others return at once); the
    advisory lock in storage would serialise them anyway.
    """
    max_events = max_events or settings.FLUSH_PASS_EVENTS
    client = buffer.client()
    total = FlushResult()
    token = f"{consumer_name()}-{time.monotonic()}"
    if not client.set(LOCK_KEY, token, nx=True, ex=settings.FLUSH_LOCK_TTL_SECONDS):
        return total
    try:
        deadline = time.monotonic() + budget_seconds
        while time.monotonic() < deadline:
            result = flush_once(max_events=max_events)
            total.entries += result.entries
            total.events += result.events
            total.stored += result.stored
            total.dead_letters += result.dead_letters
            if result.events < max_events:
                break
            if client.get(LOCK_KEY) != token.encode():
                break  # our lock expired and another flusher took over
            client.expire(LOCK_KEY, settings.FLUSH_LOCK_TTL_SECONDS)
    except DatabaseError as exc:
        log.warning("flush stopped, PostgreSQL unavailable: %s (entries stay pending)", exc)
        total.errors.append(str(exc))
    finally:
        # Release only our own lock.
        if client.get(LOCK_KEY) == token.encode():
            client.delete(LOCK_KEY)
    return total


def dead_letters(count: int = 100) -> list[tuple[str, dict]]:
    entries = buffer.client().xrange(DEAD_LETTERS, count=count)
    return [(entry_id.decode(), {k.decode(): v.decode() for k, v in f.items()})
            for entry_id, f in entries]  # fmt: skip


def dead_letter_count(client: redis.Redis | None = None) -> int:
    return (client or buffer.client()).xlen(DEAD_LETTERS)


def replay_dead_letters() -> int:
    """Put dead-lettered entries back on the stream (after fixing what refused them)."""
    client = buffer.client()
    moved = 0
    for entry_id, fields in client.xrange(DEAD_LETTERS):
        pipe = client.pipeline(transaction=True)
        pipe.xadd(buffer.STREAM, _entry(entry_id, fields).fields)
        pipe.xdel(DEAD_LETTERS, entry_id)
        pipe.execute()
        moved += 1
    return moved


def fold_dropped_counts() -> int:
    """Move the Redis counters of dropped input (bots) into `DroppedCount` rows."""
    from django.db import connection, transaction

    client = buffer.client()
    pending = f"{buffer.DROPPED}:folding"
    if not client.exists(pending):
        try:
            client.rename(buffer.DROPPED, pending)
        except redis.ResponseError:  # nothing counted
            return 0
    counts = client.hgetall(pending)
    rows = []
    for key, value in counts.items():
        site_id, day, reason = key.decode().split(":", 2)
        rows.append((int(site_id), day, reason, int(value)))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO tracking_droppedcount (site_id, day, reason, count)
            SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM tracking_site WHERE id = %s)
            ON CONFLICT (site_id, day, reason)
            DO UPDATE SET count = tracking_droppedcount.count + EXCLUDED.count
            """,
            [(s, d, r, c, s) for s, d, r, c in rows],
        )
    client.delete(pending)
    return len(rows)
