"""How many members an audience had at the end of each day.

The history comes from the change log (AudienceChange: one row per add and per
removal, each at its time), not from daily snapshots: a snapshot can only say
what the audience looked like when it was taken, while the log answers for any
past day, including days before this feature ran or days a snapshot was
missed. The members at the end of day D are the adds minus the removals up to
the end of D.

Reading a large audience's whole log on every page view would be slow, so
`fold_days` (a periodic task) rolls closed days into AudienceDay rows: whole
days recomputed from the log, which makes a second fold of the same day
harmless. Each fold recomputes the last REFOLD_DAYS folded days (changes that
committed late) and every day that has a change newer than the last fold (a
change recorded with a time in the past). `member_history` reads the folded
days and counts the days after them (today) live from the log.

Days are calendar days in settings.TIME_ZONE, as the campaign reports' are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from campaigns.models import Audience

REFOLD_DAYS = 2

FOLDED = """
SELECT max(day), COALESCE(max(last_change_id), 0)
FROM campaigns_audienceday WHERE audience_id = %(audience)s
"""

# The oldest change recorded since the last fold (found through change_cursor).
OLDEST_NEW = """
SELECT min(created_at) FROM campaigns_audiencechange
WHERE audience_id = %(audience)s AND id > %(cursor)s
"""

# One range scan of the log (its BRIN index on created_at), counted per local day,
# then every day of the range written, days without a change as zeros.
RECOMPUTE = """
WITH counted AS (
    SELECT (created_at AT TIME ZONE %(tz)s)::date AS day,
           count(*) FILTER (WHERE action = 'add') AS added,
           count(*) FILTER (WHERE action = 'remove') AS removed,
           max(id) AS last_change_id
    FROM campaigns_audiencechange
    WHERE audience_id = %(audience)s
      AND created_at >= %(first)s::date::timestamp AT TIME ZONE %(tz)s
      AND created_at < (%(last)s::date + 1)::timestamp AT TIME ZONE %(tz)s
    GROUP BY 1
)
INSERT INTO campaigns_audienceday (audience_id, day, added, removed, last_change_id)
SELECT %(audience)s, g.day::date, COALESCE(c.added, 0), COALESCE(c.removed, 0),
       COALESCE(c.last_change_id, 0)
FROM generate_series(%(first)s::date, %(last)s::date, interval '1 day') AS g(day)
LEFT JOIN counted c ON c.day = g.day::date
ON CONFLICT (audience_id, day) DO UPDATE SET
    added = EXCLUDED.added, removed = EXCLUDED.removed, last_change_id = EXCLUDED.last_change_id
"""

DAYS = """
SELECT day, added, removed FROM campaigns_audienceday
WHERE audience_id = %(audience)s ORDER BY day
"""

LIVE = """
SELECT (created_at AT TIME ZONE %(tz)s)::date AS day,
       count(*) FILTER (WHERE action = 'add'), count(*) FILTER (WHERE action = 'remove')
FROM campaigns_audiencechange
WHERE audience_id = %(audience)s
  AND created_at >= COALESCE(%(since)s, '-infinity'::timestamptz)
GROUP BY 1
"""

# Members now, per audience row of an admin queryset: folded days plus the log since.
MEMBERS_NOW = """
(SELECT COALESCE(sum(d.added - d.removed), 0) FROM campaigns_audienceday d
 WHERE d.audience_id = campaigns_audience.id)
+ (SELECT count(*) FILTER (WHERE c.action = 'add') - count(*) FILTER (WHERE c.action = 'remove')
   FROM campaigns_audiencechange c
   WHERE c.audience_id = campaigns_audience.id
     AND c.created_at >= COALESCE(
         ((SELECT max(d.day) FROM campaigns_audienceday d
           WHERE d.audience_id = campaigns_audience.id) + 1)::timestamp AT TIME ZONE %s,
         '-infinity'::timestamptz))
"""


@dataclass(frozen=True)
class DayCount:
    day: date
    members: int  # at the end of the day
    added: int
    removed: int


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def fold_audience(audience_id: int, *, now: datetime) -> int:
    """Fold one audience's closed days that need it; returns how many days were written."""
    yesterday = timezone.localdate(now) - timedelta(days=1)
    params = {"audience": audience_id, "tz": timezone.get_current_timezone_name()}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(FOLDED, params)
        folded, cursor_id = cursor.fetchone()
        cursor.execute(OLDEST_NEW, {**params, "cursor": cursor_id})
        (oldest_new,) = cursor.fetchone()
        starts = []
        if folded is not None:
            starts.append(folded - timedelta(days=REFOLD_DAYS - 1))
        if oldest_new is not None:
            starts.append(timezone.localdate(oldest_new))
        if not starts or min(starts) > yesterday:
            return 0
        first = min(starts)
        cursor.execute(RECOMPUTE, {**params, "first": first, "last": yesterday})
        return (yesterday - first).days + 1


def fold_days(*, now: datetime) -> int:
    """Fold every audience (each in its own transaction); how many days were written."""
    return sum(
        fold_audience(audience_id, now=now)
        for audience_id in Audience.objects.order_by("id").values_list("id", flat=True)
    )


def member_history(audience_id: int, *, now: datetime, days: int = 90) -> list[DayCount]:
    """Members at the end of each of the last `days` days, today included (two queries);
    today's bar is the members now."""
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    params = {"audience": audience_id, "tz": timezone.get_current_timezone_name()}
    changes: dict[date, tuple[int, int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(DAYS, params)
        for day, added, removed in cursor.fetchall():
            changes[day] = (added, removed)
        since = _start_of(max(changes) + timedelta(days=1)) if changes else None
        cursor.execute(LIVE, {**params, "since": since})
        for day, added, removed in cursor.fetchall():
            # A change stamped after today (a worker's clock ahead of this one's) counts
            # in today's bar: the chart's "now" is what the list's "members now" says.
            day = min(day, today)
            before = changes.get(day, (0, 0))
            changes[day] = (before[0] + added, before[1] + removed)
    members = sum(a - r for day, (a, r) in changes.items() if day < first)
    history = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        added, removed = changes.get(day, (0, 0))
        members += added - removed
        history.append(DayCount(day, members, added, removed))
    return history


def members_now() -> RawSQL:
    """An annotation for Audience querysets: the current member count, read like the
    chart reads it (no count over the members table)."""
    return RawSQL(MEMBERS_NOW, [timezone.get_current_timezone_name()])  # noqa: S611 (fixed SQL)
