"""A visitor's timeline: what reengage saw of one person and did for them, newest first.

One list, ordered by time, merging the person's events (with the consent
changes seen between them), campaign enrollments, the engine's decisions with
their reasons in words, each email's life (queued, sent, delivered, opened,
clicked, bounced…), audience adds and removals, and the profiles merged into
this one.

Bounded: a page holds at most `size` entries, and every source is read newest
first with a LIMIT of `size + 1` rows older than the page's cursor, through an
index on the person's id, so a visitor with a year of events costs what a new
one costs: seven queries a page. The cursor is the (time, source, id) of the
last entry shown; entries at the same instant keep a fixed order (an event
before the enrollment it triggered, before the decision, the email and the
audience change).

Merges re-point a person's events, enrollments and decisions to the surviving
profile (tracking.storage.merge_profiles, campaigns.engine.enrollment); messages and
audience memberships keep the merged profile's id, so those are read for the
whole set of profiles merged into this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import connection
from django.db.models import F, Q
from django.urls import reverse
from psycopg2 import sql

from campaigns.models import AudienceChange, AudienceMember, Decision, Enrollment
from reengage.money import format_money
from tracking.models import Event, Profile

PAGE_SIZE = 50

# Tie order at one instant (newest first shows the highest rank first).
EVENT, MERGE, ENROLLMENT, DECISION, EMAIL, AUDIENCE = range(6)

ADDED_BECAUSE = {
    "campaign": "a campaign step retargeted them",
    "rule": "they matched the audience's rule",
}
REMOVED_BECAUSE = dict(AudienceMember.RemovalReason.choices)
EVENT_PROPERTIES = ("name", "product_id", "sku", "order_id", "url", "path")
MONEY_PROPERTIES = ("revenue", "value", "total", "price")
DETAIL_CHARS = 200  # of each property shown (a URL can be 2,000)


@dataclass(frozen=True)
class Cursor:
    at: datetime
    rank: int
    key: int

    def __str__(self) -> str:
        return f"{self.at.isoformat()}~{self.rank}~{self.key}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """The inverse of str(); ValueError for anything else."""
        at, rank, key = text.split("~")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError("the time has no offset")
        return cls(moment, int(rank), int(key))


@dataclass
class TimelineEntry:
    at: datetime
    rank: int
    key: int
    kind: str  # CSS class: event, consent, merge, enrollment, decision, email, audience
    title: str
    detail: str = ""
    # (admin URL, the permission needed to open it)
    link: tuple[str, str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.at, self.rank, self.key)


@dataclass
class Page:
    entries: list[TimelineEntry]
    older: Cursor | None  # where the next page starts, if there is one


def _older(time_field: str, key_field: str, rank: int, before: Cursor | None) -> Q:
    """Rows of a source of rank `rank` that sort after `before` (newest first)."""
    if before is None:
        return Q()
    if rank < before.rank:
        return Q(**{f"{time_field}__lte": before.at})
    if rank > before.rank:
        return Q(**{f"{time_field}__lt": before.at})
    return Q(**{f"{time_field}__lt": before.at}) | Q(
        **{time_field: before.at, f"{key_field}__lt": before.key}
    )


def _older_sql(time_sql: str, key_sql: str, rank: int, before: Cursor | None) -> str:
    if before is None:
        return "true"
    if rank < before.rank:
        return f"{time_sql} <= %(before_at)s"
    if rank > before.rank:
        return f"{time_sql} < %(before_at)s"
    return f"({time_sql}, {key_sql}) < (%(before_at)s, %(before_key)s)"


# --- the person's profiles -------------------------------------------------------

MERGED = """
WITH RECURSIVE merged AS (
    SELECT id FROM tracking_profile WHERE id = %s
    UNION
    SELECT p.id FROM tracking_profile p JOIN merged m ON p.merged_into_id = m.id
)
SELECT id FROM merged
"""


def _profile_ids(profile: Profile) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(MERGED, [profile.pk])
        return [row[0] for row in cursor.fetchall()]


# --- sources ---------------------------------------------------------------------


def _money(properties: dict) -> str:
    """The event's amount as emails and reports write money ("€19.50"), when it is one."""
    for name in MONEY_PROPERTIES:
        value = properties.get(name)
        if isinstance(value, int | float | str) and not isinstance(value, bool) and value != "":
            currency = properties.get("currency")
            currency = currency[:3] if isinstance(currency, str) else ""
            try:
                amount = Decimal(str(value))
            except InvalidOperation:
                amount = None
            if amount is None or not amount.is_finite():
                return f"{value} {currency}".strip()[:DETAIL_CHARS]
            return format_money(amount, currency)
    return ""


def _event_detail(properties: dict) -> str:
    parts = [
        str(properties[name])[:DETAIL_CHARS]
        for name in EVENT_PROPERTIES
        if isinstance(properties.get(name), str | int) and properties[name] != ""
    ]
    money = _money(properties)
    return " · ".join(parts + ([money] if money else []))


def _event_title(row: dict) -> str:
    kind, name = row["type"], row["name"]
    if kind == "page":
        return f"Viewed page {name}".strip()
    if kind == "screen":
        return f"Viewed screen {name}".strip()
    if kind == "identify":
        return f"Identified as user {row['user_id']}" if row["user_id"] else "Identified"
    if kind == "alias":
        return f"Linked to user {row['user_id']} (alias)"
    if kind == "group":
        return "Joined a group"
    return name or kind


def _consent_words(new: dict, old: dict | None) -> str:
    if old is None:
        given = [p for p, v in sorted(new.items()) if v]
        refused = [p for p, v in sorted(new.items()) if not v]
        parts = []
        if given:
            parts.append("agreed to " + ", ".join(given))
        if refused:
            parts.append("refused " + ", ".join(refused))
        return ("Consent given: " if given else "Consent refused: ") + "; ".join(parts)
    changed = [(p, v) for p, v in sorted(new.items()) if old.get(p) != v]
    changes = [("agreed to " if v else "withdrew consent to ") + p for p, v in changed]
    # Agreeing to purposes never decided before is giving consent, not changing it.
    first_time = all(v and p not in old for p, v in changed)
    return ("Consent given: " if first_time else "Consent changed: ") + ", ".join(changes)


def _events(profile: Profile, before: Cursor | None, limit: int) -> list[TimelineEntry]:
    rows = list(
        Event.objects.filter(
            _older("timestamp", "id", EVENT, before),
            site_id=profile.site_id,
            profile_id=profile.pk,
        )
        .order_by("-timestamp", "-id")
        .values(
            "id",
            "timestamp",
            "type",
            "name",
            "user_id",
            "properties",
            consent=F("context__consent"),
        )[:limit]
    )
    complete = len(rows) < limit  # nothing older than the last row
    entries = []
    for i, row in enumerate(rows):
        properties = row["properties"] if isinstance(row["properties"], dict) else {}
        entry = TimelineEntry(row["timestamp"], EVENT, row["id"], "event", _event_title(row),
                      _event_detail(properties))  # fmt: skip
        consent = row["consent"]
        if isinstance(consent, dict) and consent:
            # An earlier event's empty consent ({}) recorded nothing: this is the first.
            older = next(
                (r["consent"] for r in rows[i + 1 :] if isinstance(r["consent"], dict)
                 and r["consent"]),
                None,
            )  # fmt: skip
            if older is None and complete:
                entry.notes.append(_consent_words(consent, None))
                entry.kind = "consent"
            elif older is not None and older != consent:
                entry.notes.append(_consent_words(consent, older))
                entry.kind = "consent"
        entries.append(entry)
    return entries


def _merges(ids: list[int], before: Cursor | None, limit: int) -> list[TimelineEntry]:
    merged = (
        Profile.objects.filter(
            _older("merged_at", "id", MERGE, before),
            merged_into_id__in=ids,
            merged_at__isnull=False,
        )
        .order_by("-merged_at", "-id")
        .only("id", "email", "user_id", "merged_at")[:limit]
    )
    return [
        TimelineEntry(p.merged_at, MERGE, p.id, "merge", "Recognised as the same person as another profile",
              f"profile {p.id}" + (f" ({p.email})" if p.email else ""),
              (reverse("admin:tracking_profile_timeline", args=[p.id]), "tracking.view_profile"))
        for p in merged
    ]  # fmt: skip


def _enrollment_state(e: Enrollment) -> str:
    if e.status == Enrollment.Status.ACTIVE:
        due = f", next step due {e.due_at:%Y-%m-%d %H:%M}" if e.due_at else ""
        return f"Still running{due}."
    if e.status == Enrollment.Status.EXITED:
        return "Left the campaign: " + Decision.REASONS.get(e.exit_reason, e.exit_reason) + "."
    return e.get_status_display() + "."


def _enrollments(profile: Profile, before: Cursor | None, limit: int) -> list[TimelineEntry]:
    rows = (
        Enrollment.objects.filter(
            _older("enrolled_at", "id", ENROLLMENT, before), profile_id=profile.pk
        )
        .select_related("campaign")
        .only(
            "id", "enrolled_at", "status", "is_holdout", "exit_reason", "due_at", "campaign__name"
        )
        .order_by("-enrolled_at", "-id")[:limit]
    )
    return [
        TimelineEntry(e.enrolled_at, ENROLLMENT, e.id, "enrollment",
              f"Entered the campaign “{e.campaign.name}”"
              + (" in the holdout group (gets nothing; measures the lift)" if e.is_holdout else ""),
              _enrollment_state(e),
              (reverse("admin:campaigns_enrollment_change", args=[e.id]),
               "campaigns.view_enrollment"))
        for e in rows
    ]  # fmt: skip


def _decisions(profile: Profile, before: Cursor | None, limit: int) -> list[TimelineEntry]:
    rows = (
        Decision.objects.filter(_older("decided_at", "id", DECISION, before), profile_id=profile.pk)
        .select_related("campaign")
        .only(
            "id",
            "decided_at",
            "position",
            "outcome",
            "reason",
            "rescheduled_to",
            "enrollment_id",
            "campaign__name",
        )
        .order_by("-decided_at", "-id")[:limit]
    )
    entries = []
    for d in rows:
        why = Decision.REASONS.get(d.reason, d.reason)
        if d.rescheduled_to:
            why += f"; tried again at {d.rescheduled_to:%Y-%m-%d %H:%M}"
        entries.append(
            TimelineEntry(d.decided_at, DECISION, d.id, "decision",
                  f"“{d.campaign.name}”, step {d.position + 1}: {d.get_outcome_display()}",
                  why + ".",
                  (reverse("admin:campaigns_enrollment_change", args=[d.enrollment_id]),
                   "campaigns.view_enrollment"))
        )  # fmt: skip
    return entries


# Each email is several entries, one per moment of its life; the key is id * 8 + stage.
EMAILS = """
SELECT m.id * 8 + s.stage, s.at, s.stage, m.id, c.name, m.position, m.to_email, m.status,
       m.error
FROM campaigns_message m
LEFT JOIN campaigns_campaign c ON c.id = m.campaign_id
CROSS JOIN LATERAL (VALUES
    (0, m.created_at), (1, m.sent_at), (2, m.delivered_at), (3, m.opened_at),
    (4, m.clicked_at),
    (5, CASE WHEN m.status IN ('bounced', 'complained', 'unsubscribed', 'suppressed', 'failed')
             THEN COALESCE(m.last_event_at, m.sent_at, m.created_at) END)
) AS s(stage, at)
WHERE m.profile_id = ANY(%(profiles)s) AND s.at IS NOT NULL AND {older}
ORDER BY s.at DESC, 1 DESC
LIMIT %(limit)s
"""

EMAIL_STAGES = {
    0: "queued",
    1: "sent to {to}",
    2: "delivered",
    3: "opened",
    4: "clicked",
}
EMAIL_ENDINGS = {
    "bounced": "bounced: the address does not take mail (now suppressed)",
    "complained": "marked as spam by the recipient (address suppressed)",
    "unsubscribed": "the recipient unsubscribed",
    "suppressed": "not sent: the address is on the suppression list",
    "failed": "could not be sent",
}


def _emails(ids: list[int], before: Cursor | None, limit: int) -> list[TimelineEntry]:
    older = _older_sql("s.at", "m.id * 8 + s.stage", EMAIL, before)
    params = {"profiles": ids, "limit": limit}
    if before is not None:
        params.update(before_at=before.at, before_key=before.key)
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL(EMAILS).format(older=sql.SQL(older)), params)
        rows = cursor.fetchall()
    entries = []
    for key, at, stage, message_id, campaign, position, to, status, error in rows:
        what = EMAIL_STAGES[stage].format(to=to) if stage in EMAIL_STAGES else EMAIL_ENDINGS[status]
        entries.append(
            TimelineEntry(at, EMAIL, key, "email",
                  f"Email of “{campaign or 'a deleted campaign'}”, step {position + 1}: {what}",
                  error[:300] if stage == 5 and error else "",
                  (reverse("admin:campaigns_message_change", args=[message_id]),
                   "campaigns.view_message"))
        )  # fmt: skip
    return entries


def _audience_changes(ids: list[int], before: Cursor | None, limit: int) -> list[TimelineEntry]:
    rows = (
        AudienceChange.objects.filter(
            _older("created_at", "id", AUDIENCE, before), member__profile_id__in=ids
        )
        .select_related("audience")
        .only("id", "created_at", "action", "reason", "audience__name")
        .order_by("-created_at", "-id")[:limit]
    )
    entries = []
    for c in rows:
        if c.action == AudienceChange.Action.ADD:
            title = f"Added to the audience “{c.audience.name}”"
            why = ADDED_BECAUSE.get(c.reason, c.reason)
        else:
            title = f"Removed from the audience “{c.audience.name}”"
            why = REMOVED_BECAUSE.get(c.reason, c.reason)
        entries.append(
            TimelineEntry(c.created_at, AUDIENCE, c.id, "audience", title,
                  (why[:1].upper() + why[1:] + ".") if why else "",
                  (reverse("admin:campaigns_audience_change", args=[c.audience_id]),
                   "campaigns.view_audience"))
        )  # fmt: skip
    return entries


def timeline(profile: Profile, *, before: Cursor | None = None, size: int = PAGE_SIZE) -> Page:
    """One page of the person's timeline, newest first, older than `before`."""
    ids = _profile_ids(profile)
    limit = size + 1
    entries = [
        *_events(profile, before, limit),
        *_merges(ids, before, limit),
        *_enrollments(profile, before, limit),
        *_decisions(profile, before, limit),
        *_emails(ids, before, limit),
        *_audience_changes(ids, before, limit),
    ]
    entries.sort(key=lambda e: (e.at, e.rank, e.key), reverse=True)
    page = entries[:size]
    older = page[-1].cursor if len(entries) > size else None
    return Page(page, older)
