"""Send queued Messages through the configured email backend, each exactly once, many
at a time.

The Message row is the outbox. The order of writes is what makes "exactly once"
hold when a worker is SIGKILLed or a task is delivered twice:

1. **claim** — one conditional UPDATE `queued → sending` for a batch of rows (picked
   with `FOR UPDATE SKIP LOCKED`), committed on its own *before* any of them is handed
   to the backend. A second worker or a duplicate task skips rows already claimed.
2. **check and render** — one query loads the batch with its relations, one more the
   suppressions and campaign opt-outs of its addresses; each message is then checked
   (consent, suppression, erasure, a changed address) and rendered for its recipient.
3. **send** — one event loop for Anymail's HTTP backends
   (campaigns/email/http_sending.py), a pool of threads for the others
   (campaigns/email/senders.py), hands the emails to the ESP, up to
   `EMAIL_SEND_CONCURRENCY` in flight per process and
   `EMAIL_SEND_SITE_CONCURRENCY` per site, within the site's (and the ESP's) per-minute
   limit and pauses (campaigns/email/pacing.py).
4. **finish** — one conditional UPDATE `sending → sent` (or failed, retried…) for the
   outcomes gathered so far, with the ESP's message ids (campaigns/email/outbox.py).

A crash between 1 and 4 leaves rows in `sending`; nothing ever resends a `sending`
row blindly, because the ESP may have accepted it. `recover_interrupted` looks at
rows stuck longer than any task may run: if the backend can say what it received
(the optional `find_sent(ids)` hook — the dev mailbox has it) the row is reconciled
to `sent` or safely re-queued; otherwise it is marked `failed` with "interrupted
mid-send, check ESP" and the Message-ID to search for. The loop never holds more
than `EMAIL_SEND_CONCURRENCY` claimed, unfinished messages (in flight, rendered and
waiting for a slot, or sent and waiting for their finish), so that is the most a
SIGKILL can leave for recovery.

The check in 2 runs after the claim and at most one batch's worth of sends before the
email goes out (a fraction of a second): whatever the person did since the engine's
decision — unsubscribed, withdrew consent, was erased — wins.

Transient ESP errors (HTTP 429/5xx, connection refused, SMTP 4xx) put the row back
to `queued` with a backoff (a 429's `Retry-After` when it gives one, which also pauses
the site and halves its concurrency); permanent ones mark it `failed` with the
reason; an ambiguous one (a timeout after the request went out) is `failed` with
"outcome unknown, check ESP" rather than risk a duplicate.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import formataddr

import redis
from anymail.message import AnymailMessage
from anymail.utils import UNSET
from django.conf import settings
from django.core.mail import get_connection
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from campaigns.email import pacing
from campaigns.email.composing import check_headers, domain
from campaigns.email.delivery import (
    FAILED,
    RETRIED,
    SENT,
    SKIPPED,
    SUPPRESSED,
    Clock,
    RunCache,
    classify,
    load_claimed,
    prepare,
    record,
    settle,
    suppression_reason,
)
from campaigns.email.outbox import (
    Finish,
    claim_batch,
    claim_one,
    finish_many,
    record_choices,
    release,
)
from campaigns.email.rendering import EmailData, render_email
from campaigns.email.senders import Job, make_pool, send
from campaigns.models import Message

# Also what callers and tests use from here.
__all__ = [
    "FAILED", "RETRIED", "SENT", "SKIPPED", "SUPPRESSED", "RunCache", "SendReport",
    "claim_one", "classify", "recover_interrupted", "send_one", "send_queued", "send_test",
    "suppression_reason",
]  # fmt: skip

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted mid-send, check ESP"

# Outcomes wait at most this long (seconds) to be recorded together in one statement.
FINISH_LINGER = 0.05
# With nothing else to send, a run waits this long at most (seconds) for a paused site.
MAX_PAUSE_WAIT = 5.0


# --- runs --------------------------------------------------------------------------------


@dataclass
class SendReport:
    counts: dict[str, int] = field(default_factory=dict)
    rate_limited_sites: list[int] = field(default_factory=list)
    throttled_sites: list[int] = field(default_factory=list)  # the ESP answered 429
    more_work: bool = False  # stopped by the time budget or the limit, not an empty queue

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class SendRun:
    """One run of the sending loop: claim, check and render on this thread, send on the
    pool's, finish in batches, until the queue is empty, `limit` or the time budget.

    A pipeline, so the ESP always has work: the next batch is claimed as soon as the
    last one is rendered and there is room for a quarter of the slots; messages are
    rendered a few at a time and handed out at once, while the answers of earlier ones
    are gathered and recorded."""

    def __init__(self, *, clock: Clock, limit: int, budget: float, backend, concurrency: int):
        self.clock = clock
        self.limit = limit
        self.deadline = time.monotonic() + budget
        self.concurrency = concurrency
        self.refill_at = max(1, concurrency // 4)  # free slots worth a claim
        self.chunk = max(1, concurrency // 8)  # rendered between hand-outs
        self.flush_at = max(1, concurrency // 2)  # outcomes worth a finish
        self.backend = backend
        self.db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself, not the proxy
        self.pool = make_pool(concurrency, backend, db=self.db)  # started by the first send
        self.db.inc_thread_sharing()  # lent to the sending threads (senders.py)
        self.cache = RunCache()
        self.report = SendReport()
        self.loaded: deque[Message] = deque()  # claimed and loaded, not yet rendered
        self.buffer: deque[Job] = deque()  # rendered, waiting for a free slot
        self.in_flight: Counter[int] = Counter()  # per site
        self.pending: list[Finish] = []  # outcomes not yet written
        self.pending_since = 0.0
        self.held: dict[int, datetime] = {}  # site → no claims before (rate, pause)
        self.claimed = 0
        self.draining = False  # the queue had nothing more for us
        self.claim_after = 0.0  # no claim before (monotonic): the last found nothing
        self.waited_for: set[int] = set()  # held sites this run already waited for once

    def outstanding(self) -> int:
        """Claimed and not finished: never more than the concurrency, which bounds what a
        SIGKILL can leave in `sending`."""
        return self.pool.busy + len(self.loaded) + len(self.buffer) + len(self.pending)

    def run(self) -> SendReport:
        try:
            while True:
                self.collect(timeout=0)
                if not self.loaded and not self.draining and not self.out_of_time_or_limit():
                    if self.concurrency - self.outstanding() < self.refill_at and self.pending:
                        self.flush()  # the room is held by outcomes not yet written
                    if (
                        self.concurrency - self.outstanding() >= self.refill_at
                        and time.monotonic() >= self.claim_after
                    ):
                        self.refill()
                self.prepare_some()
                self.dispatch()
                idle = not self.pool.busy and not self.buffer and not self.loaded
                if self.pending and (
                    idle
                    or len(self.pending) >= self.flush_at
                    or time.monotonic() - self.pending_since >= FINISH_LINGER
                ):
                    self.flush()
                if idle and not self.pending:
                    if self.draining or self.out_of_time_or_limit():
                        break
                    # Nothing in hand: wait for the next claim (a paused site's end).
                    pause = min(self.claim_after, self.deadline) - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    continue
                if self.pool.busy and not self.loaded:
                    wait = FINISH_LINGER
                    if self.pending:
                        wait = max(0.0, self.pending_since + FINISH_LINGER - time.monotonic())
                    self.collect(timeout=wait)
        finally:
            self.shut_down()
        self.report.more_work = not self.draining
        return self.report

    def out_of_time_or_limit(self) -> bool:
        return self.claimed >= self.limit or time.monotonic() >= self.deadline

    # -- claiming --------------------------------------------------------------------

    def refill(self) -> None:
        now = self.clock()
        for site_id, until in pacing.paused_sites(now).items():
            self.held[site_id] = max(until, self.held.get(site_id, until))
        self.held = {site: until for site, until in self.held.items() if until > now}
        queued = Counter(job.site_id for job in self.buffer)
        full = {
            site_id
            for site_id in set(self.in_flight) | set(queued)
            if self.in_flight[site_id] + queued[site_id]
            >= pacing.site_concurrency(site_id, self.concurrency)
        }
        room = min(self.concurrency - self.outstanding(), self.limit - self.claimed)
        if room <= 0:
            return
        rows = claim_batch(now, room, sorted(set(self.held) | full))
        if not rows:
            # Nothing due for the sites we may send for: done, unless sites at their
            # concurrency limit were left out (their emails wait for a free slot), or a
            # site's short pause (a 429's Retry-After) ends soon: then claim again after
            # it, once, rather than leave its emails to the next run.
            self.claim_after = time.monotonic() + FINISH_LINGER
            soon = [u for s, u in self.held.items() if s not in self.waited_for]
            wait = (min(soon) - now).total_seconds() if soon else None
            if full:
                return
            if wait is not None and wait <= MAX_PAUSE_WAIT and not self.out_of_time_or_limit():
                self.waited_for |= {s for s, u in self.held.items() if u <= min(soon)}
                self.claim_after = time.monotonic() + wait
                return
            self.draining = True
            return
        self.claimed += len(rows)
        self.waited_for.clear()
        by_site: dict[int, list[int]] = defaultdict(list)
        for message_id, site_id in rows:
            by_site[site_id].append(message_id)
        allowed: list[int] = []
        over: dict[datetime, list[int]] = defaultdict(list)
        for site_id, ids in by_site.items():
            granted, until = self.reserve(site_id, len(ids), now)
            allowed += ids[:granted]
            if granted < len(ids):
                over[until] += ids[granted:]
                self.held[site_id] = until
                if site_id not in self.report.rate_limited_sites:
                    self.report.rate_limited_sites.append(site_id)
        for until, ids in over.items():
            release(ids, until)
        self.loaded.extend(load_claimed(sorted(allowed), self.cache))

    def prepare_some(self) -> None:
        """Check and render the next few loaded messages; their variant and promo code
        choices are recorded (one statement) before any of them is handed out."""
        choices = []
        for _ in range(min(self.chunk, len(self.loaded))):
            prepared = prepare(self.loaded.popleft(), clock=self.clock, cache=self.cache)
            if isinstance(prepared, Finish):
                outcome = SUPPRESSED if prepared.status == Message.Status.SUPPRESSED else FAILED
                self.add_pending(prepared, outcome)
                continue
            if prepared.choice:
                choices.append(prepared.choice)
            self.buffer.append(prepared.job)
        record_choices(choices)

    def reserve(self, site_id: int, count: int, now: datetime) -> tuple[int, datetime]:
        """Sends granted from the site's minute, and until when the rest must wait: the
        next minute, or — Redis unavailable, so no send may go out uncounted — a few
        seconds, after which this run tries again (a Redis blip must not park a site's
        emails until the next run)."""
        per_minute = self.cache.settings_for(site_id).sends_per_minute
        try:
            return pacing.reserve_sends(site_id, per_minute, now, count), pacing.next_window(now)
        except redis.RedisError:
            log.warning("Redis unavailable for the send rate limit; holding site %s", site_id)
            return 0, now + timedelta(seconds=MAX_PAUSE_WAIT)

    # -- sending ---------------------------------------------------------------------

    def dispatch(self) -> None:
        now = self.clock()
        waiting: deque[Job] = deque()
        paused: dict[datetime, list[int]] = defaultdict(list)
        for job in self.buffer:
            until = self.held.get(job.site_id)
            if until is not None and until > now and job.site_id in self.report.throttled_sites:
                paused[until].append(job.message_id)  # the ESP said wait: not sent, back
            elif self.pool.busy < self.concurrency and self.in_flight[
                job.site_id
            ] < pacing.site_concurrency(job.site_id, self.concurrency):
                self.in_flight[job.site_id] += 1
                self.pool.submit(job)
            else:
                waiting.append(job)
        self.buffer = waiting
        for until, ids in paused.items():
            release(ids, until)

    def collect(self, timeout: float) -> None:
        results = self.pool.take(timeout)
        if not results:
            return
        now = self.clock()
        for result in results:
            site_id = result.job.site_id
            self.in_flight[site_id] -= 1
            if not self.in_flight[site_id]:
                del self.in_flight[site_id]
            settled = settle(result, now)
            self.add_pending(settled.finish, settled.outcome)
            if settled.outcome == SENT:
                pacing.succeeded(site_id, self.concurrency)
            if settled.throttled:
                limit = pacing.throttled(site_id, self.concurrency)
                log.warning("the ESP throttles site %s: %s in flight at most", site_id, limit)
                if site_id not in self.report.throttled_sites:
                    self.report.throttled_sites.append(site_id)
            if settled.pause_until:
                pacing.pause_site(site_id, settled.pause_until)
                self.held[site_id] = max(settled.pause_until, self.held.get(site_id, now))

    def add_pending(self, finish: Finish, outcome: str) -> None:
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.append(finish)
        self.report.add(outcome)

    def flush(self) -> None:
        if self.pending:
            pending, self.pending = self.pending, []
            record(pending, self.clock())

    def shut_down(self) -> None:
        """Also after an exception (a soft time limit): what was never handed to the
        backend goes back to the queue, what was handed over is waited for and recorded."""
        try:
            unsent = [m.pk for m in self.loaded] + [job.message_id for job in self.buffer]
            if unsent:
                release(unsent)
                self.loaded.clear()
                self.buffer.clear()
            give_up = time.monotonic() + 60
            while self.pool.busy and time.monotonic() < give_up:
                self.collect(timeout=1)
            self.flush()
        finally:
            self.pool.close(timeout=5)
            self.db.dec_thread_sharing()


def send_queued(
    *,
    clock: Clock = timezone.now,
    limit: int | None = None,
    budget_seconds: float | None = None,
    backend=None,
    concurrency: int | None = None,
) -> SendReport:
    """Claim and send queued messages until none is left, `limit` or the time budget.

    `backend`: one backend shared by every sending thread (it must be thread-safe, as
    Anymail's test backend and the dev mailbox are); by default each thread opens its
    own `get_connection()`.
    """
    run = SendRun(
        clock=clock,
        limit=limit if limit is not None else settings.EMAIL_SEND_BATCH,
        budget=budget_seconds if budget_seconds is not None else settings.EMAIL_SEND_BUDGET_SECONDS,
        backend=backend,
        concurrency=concurrency or settings.EMAIL_SEND_CONCURRENCY,
    )
    return run.run()


def send_one(message_id: int, *, clock: Clock = timezone.now, backend=None) -> str:
    """Send this message now if it is still queued (on this thread, no pool)."""
    now = clock()
    claimed = claim_one(message_id, now)
    if claimed is None:
        return SKIPPED  # already claimed by another worker, a duplicate task, or not due
    cache = RunCache()
    site_id = claimed[1]
    held = pacing.paused_sites(now).get(site_id)
    if held is not None:
        release([message_id], held)
        return SKIPPED
    per_minute = cache.settings_for(site_id).sends_per_minute
    try:
        granted = pacing.reserve_sends(site_id, per_minute, now, 1)
    except redis.RedisError:
        granted = 0
    if not granted:
        release([message_id], pacing.next_window(now))
        return SKIPPED
    [message] = load_claimed([message_id]) or [None]
    if message is None:
        return SKIPPED
    prepared = prepare(message, clock=clock, cache=cache)
    if isinstance(prepared, Finish):
        record([prepared], clock())
        return SUPPRESSED if prepared.status == Message.Status.SUPPRESSED else FAILED
    if prepared.choice:
        record_choices([prepared.choice])
    backend = backend or get_connection()
    with backend:
        settled = settle(send(backend, prepared.job), clock())
    if settled.throttled:
        pacing.throttled(site_id)
    if settled.pause_until:
        pacing.pause_site(site_id, settled.pause_until)
    record([settled.finish], clock())
    return settled.outcome


def recover_interrupted(*, now: datetime, backend=None) -> dict[str, int]:
    """Settle messages stuck in `sending` longer than any send task may run."""
    cutoff = now - timedelta(seconds=settings.EMAIL_INTERRUPTED_AFTER_SECONDS)
    stuck = list(
        Message.objects.filter(status=Message.Status.SENDING, claimed_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:1000]
    )
    result = {"reconciled": 0, "requeued": 0, "failed": 0}
    if not stuck:
        return result
    backend = backend or get_connection()
    find_sent = getattr(backend, "find_sent", None)
    if find_sent is None:
        moved = finish_many(
            [
                Finish(
                    message_id,
                    Message.Status.FAILED,
                    error=f"{INTERRUPTED} for Message-ID <reengage.{message_id}@{domain()}>; "
                    "not resent automatically",
                )
                for message_id in stuck
            ]
        )
        result["failed"] = len(moved)
        return result
    # The backend can say what it received: settle each message by its answer.
    found = find_sent(stuck)
    finishes = [
        Finish(message_id, Message.Status.SENT, sent_at=now, esp_id=found[message_id])
        if message_id in found
        else Finish(
            message_id,
            Message.Status.QUEUED,
            error="interrupted before the backend received it; re-queued",
        )
        for message_id in stuck
    ]
    moved = finish_many(finishes)
    result["reconciled"] = sum(1 for m in moved if m in found)
    result["requeued"] = len(moved) - result["reconciled"]
    return result


def send_test(template, to_email: str, data: EmailData, *, backend=None) -> None:
    """The admin's "send a test to me": rendered like the real thing, no tracking."""
    rendered = render_email(template, data, tracking=False)
    if template.from_email:
        from_email = formataddr((template.from_name, template.from_email))
    else:
        from_email = settings.DEFAULT_FROM_EMAIL
    subject = f"[Test] {rendered.subject}"
    check_headers({"Subject": subject, "To": to_email, "From": from_email})
    email = AnymailMessage(
        subject=subject,
        body=rendered.text,
        from_email=from_email,
        to=[to_email],
        # Not for an ESP that takes no metadata (Postal, MailerSend): Anymail would refuse it.
        metadata={"test": "1"} if settings.EMAIL_SEND_METADATA else UNSET,
        connection=backend or get_connection(),
    )
    email.attach_alternative(rendered.html, "text/html")
    email.send()
