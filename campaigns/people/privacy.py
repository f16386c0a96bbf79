"""Erasure and access: what reengage holds about one person, and forgetting it.

`forget()` is the one place that erases a person; the `forget` command, the
admin action and the API call it. It runs in one transaction:

- audience memberships end with reason `erased` (a removal change goes to every
  destination; the member rows drop their hashes);
- a `Suppression` keyed by the email's SHA-256 (no address) stays, so the
  person is never mailed again, by any campaign;
- messages keep their counts for reports but lose the address, and the dev
  mailbox copies and ESP events naming the address are deleted or blanked;
- events, visitors (with their ad identifiers), the profile, its enrollments and
  decisions are deleted.

It is idempotent: a second call finds nothing more to delete and says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Q

from campaigns import audiences
from campaigns.models import EmailCapLock, Message, Suppression
from campaigns.models.email import DevMail, EmailEvent, email_hash
from tracking.models import AdIdentifiers, Event, Profile, Site, Visitor

# What the access export shows of each browser's ad identifiers.
AD_IDENTIFIER_FIELDS = (
    "visitor__anonymous_id", "fbp", "fbc", "gclid", "gbraid", "wbraid", "ga_client_id",
    "client_ip", "user_agent", "updated_at",
)  # fmt: skip


@dataclass
class ForgetReport:
    profiles: int = 0
    visitors: int = 0
    events: int = 0
    audience_removals: int = 0
    messages_anonymised: int = 0
    dev_mails_deleted: int = 0
    esp_events_blanked: int = 0
    suppressions_added: int = 0
    emails: list[str] = field(default_factory=list)  # hashes, never addresses

    def as_dict(self) -> dict:
        return asdict(self)


def find_profiles(site: Site, *, email: str = "", anonymous_id: str = "") -> list[Profile]:
    """Every profile of the site that the email or the anonymous id (or userId) names."""
    query = Q(pk__in=[])
    if email:
        query |= Q(email__iexact=email.strip())
    if anonymous_id:
        query |= Q(visitors__anonymous_id=anonymous_id) | Q(user_id=anonymous_id)
    return list(Profile.objects.filter(query, site=site).distinct())


def with_merged(site: Site, ids: list[int]) -> list[int]:
    """The profiles given, every profile ever merged into them (a person who used two
    browsers), and the ones they were merged into, transitively: one person's rows."""
    found = set(ids)
    while True:
        more = set(
            Profile.objects.filter(site=site)
            .filter(Q(merged_into_id__in=found) | Q(id__in=Profile.objects.filter(
                id__in=found, merged_into__isnull=False).values("merged_into_id")))
            .values_list("id", flat=True)
        ) - found  # fmt: skip
        if not more:
            return sorted(found)
        found |= more


def forget(site: Site, *, email: str = "", anonymous_id: str = "", now: datetime) -> ForgetReport:
    if not email and not anonymous_id:
        raise ValueError("name the person: an email or an anonymous id")
    report = ForgetReport()
    with transaction.atomic():
        found = find_profiles(site, email=email, anonymous_id=anonymous_id)
        ids = with_merged(site, [p.id for p in found])
        profiles = list(Profile.objects.filter(id__in=ids))
        addresses = {a.strip().lower() for a in [email, *(p.email or "" for p in profiles)] if a}
        user_ids = [p.user_id for p in profiles if p.user_id]
        anonymous_ids = list(
            Visitor.objects.filter(profile_id__in=ids).values_list("anonymous_id", flat=True)
        )
        if anonymous_id:
            anonymous_ids.append(anonymous_id)
        if ids:
            report.audience_removals = audiences.remove_profiles(ids, now=now, reason="erased")
            # Earlier changes (adds, expiries) named the person's browsers and hashes;
            # the erasure's own removal changes keep them until delivered, since a
            # destination needs them to remove the person from its platform.
            _blank_past_audience_changes(ids)
        for address in sorted(addresses):
            digest = email_hash(address)
            report.emails.append(digest)
            _, created = Suppression.objects.update_or_create(
                site=site, email_hash=digest,
                defaults={"email": "", "reason": Suppression.Reason.ERASED},
                create_defaults={"email": "", "reason": Suppression.Reason.ERASED,
                                 "note": "person erased"},
            )  # fmt: skip
            report.suppressions_added += created
        messages = Message.objects.filter(site=site).filter(
            Q(profile_id__in=ids) | Q(to_email__in=_case_variants(addresses))
        )
        message_ids = list(messages.values_list("id", flat=True))
        report.messages_anonymised = messages.exclude(to_email="").update(to_email="")
        report.dev_mails_deleted, _ = DevMail.objects.filter(message_id__in=message_ids).delete()
        report.esp_events_blanked = (
            EmailEvent.objects.filter(Q(message_id__in=message_ids) | Q(recipient__in=addresses))
            .exclude(recipient="")
            .update(recipient="")
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM tracking_event WHERE site_id = %s AND "
                "(profile_id = ANY(%s::bigint[]) OR anonymous_id = ANY(%s::text[])"
                " OR (user_id <> '' AND user_id = ANY(%s::text[])))",
                [site.id, ids, anonymous_ids, user_ids],
            )
            report.events = cursor.rowcount
        report.visitors = Visitor.objects.filter(profile_id__in=ids).count()
        # Every profile of the person goes, the merged-away ones (their phone, name and
        # traits) included; pointers from them to each other are cut first.
        Profile.objects.filter(id__in=ids).update(merged_into=None)
        report.profiles = len(ids)
        Profile.objects.filter(id__in=ids).delete()  # visitors, enrollments, decisions cascade
        EmailCapLock.objects.filter(profile_id__in=ids).delete()  # a bare id, no FK
    return report


def _blank_past_audience_changes(profile_ids: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_audiencechange c SET anonymous_ids = '[]'::jsonb,"
            " email_sha256 = '', phone_sha256 = '', phone_digits_sha256 = ''"
            " FROM campaigns_audiencemember m"
            " WHERE c.member_id = m.id AND m.profile_id = ANY(%s::bigint[])"
            " AND c.reason <> 'erased'",
            [profile_ids],
        )


def _case_variants(addresses: set[str]) -> list[str]:
    # to_email keeps the case it was sent with; match it case-insensitively via a
    # small set of variants instead of lower() on every message row.
    return sorted(addresses | {a.upper() for a in addresses})


def export(site: Site, *, email: str = "", anonymous_id: str = "") -> dict:
    """Everything held about the person, as JSON-ready data (the access request)."""
    from campaigns.models import AudienceMember, Decision, Enrollment

    people = []
    for profile in find_profiles(site, email=email, anonymous_id=anonymous_id):
        events = Event.objects.filter(site_id=site.id, profile_id=profile.id).order_by("timestamp")
        people.append(
            {
                "profile": profile.as_json(),
                "anonymousIds": list(profile.visitors.values_list("anonymous_id", flat=True)),
                # Meta's and Google's ids of their browsers (never shown by a public endpoint:
                # this is the person's own access request).
                "adIdentifiers": list(
                    AdIdentifiers.objects.filter(visitor__profile=profile)
                    .order_by("visitor_id")
                    .values(*AD_IDENTIFIER_FIELDS)
                ),
                "events": [
                    {
                        "messageId": e.message_id,
                        "type": e.type,
                        "event": e.name,
                        "timestamp": e.timestamp,
                        "properties": e.properties,
                        "context": e.context,
                    }
                    for e in events
                ],
                "enrollments": list(
                    Enrollment.objects.filter(profile=profile).values(
                        "campaign__name", "status", "enrolled_at", "exit_reason"
                    )
                ),
                "decisions": list(
                    Decision.objects.filter(enrollment__profile=profile).values(
                        "campaign__name", "position", "outcome", "reason", "decided_at"
                    )
                ),
                "messages": list(
                    Message.objects.filter(profile=profile).values(
                        "campaign__name", "to_email", "status", "created_at", "sent_at"
                    )
                ),
                "audiences": list(
                    AudienceMember.objects.filter(profile=profile).values(
                        "audience__name", "added_at", "expires_at", "removed_at", "removal_reason"
                    )
                ),
            }
        )
    addresses = {email.strip().lower()} if email else set()
    addresses |= {p["profile"]["email"].lower() for p in people if p["profile"]["email"]}
    suppressions = Suppression.objects.filter(
        site=site, email_hash__in=[email_hash(a) for a in addresses]
    ).values("reason", "created_at")
    return {"site": site.name, "people": people, "suppressions": list(suppressions)}


# --- retention -----------------------------------------------------------------------


def anonymise_inactive_profiles(*, now: datetime, inactive_days: int, batch: int = 1000) -> int:
    """Strip identities from people not seen for `inactive_days`.

    The profile keeps its (anonymous) events for reports but loses email, userId,
    traits, consent and its browsers' anonymous ids (visitors are deleted, the
    events' id columns blanked), and leaves every audience. Set-based, in batches.
    """
    from datetime import timedelta

    cutoff = now - timedelta(days=inactive_days)
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                Profile.objects.filter(last_seen_at__lt=cutoff)
                .filter(
                    Q(email__isnull=False) | Q(user_id__isnull=False) | Q(visitors__isnull=False)
                )
                .values_list("id", flat=True)
                .distinct()[:batch]
            )
            if not ids:
                return total
            audiences.remove_profiles(ids, now=now, reason="expired")
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE tracking_event SET anonymous_id = '', user_id = '', "
                    "context = context - 'ip' - 'userAgent' "
                    "WHERE profile_id = ANY(%s::bigint[])",
                    [ids],
                )
            Visitor.objects.filter(profile_id__in=ids).delete()
            Profile.objects.filter(id__in=ids).update(
                email=None, email_verified=False, user_id=None, traits={}, consent={}
            )
            total += len(ids)


def blank_erasure_changes(*, now: datetime, days: int) -> int:
    """Blank the browser ids and hashes that erasures' removal changes kept, once they
    are `days` old and no webhook still has them to send: by then push destinations
    got them and pull/export consumers had time to read them."""
    from datetime import timedelta

    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_audiencechange c SET anonymous_ids = '[]'::jsonb,
                email_sha256 = '', phone_sha256 = '', phone_digits_sha256 = ''
            WHERE c.reason = 'erased' AND c.created_at < %(cutoff)s
              AND (c.anonymous_ids <> '[]'::jsonb OR c.email_sha256 <> ''
                   OR c.phone_sha256 <> '' OR c.phone_digits_sha256 <> '')
              -- not waiting to be batched for an enabled webhook ...
              AND NOT EXISTS (
                SELECT 1 FROM campaigns_destination t
                WHERE t.audience_id = c.audience_id AND t.enabled AND t.url <> ''
                  AND t.last_change_id < c.id)
              -- ... nor in a batch still being sent (its body is rebuilt per attempt)
              AND NOT EXISTS (
                SELECT 1 FROM campaigns_delivery d
                WHERE d.status = 'pending' AND d.change_ids @> to_jsonb(c.id))
            """,
            {"cutoff": now - timedelta(days=days)},
        )
        return cursor.rowcount


def prune_message_bodies(*, now: datetime, days: int) -> int:
    """Delete kept copies of sent emails (the dev mailbox) older than `days`."""
    from datetime import timedelta

    deleted, _ = DevMail.objects.filter(received_at__lt=now - timedelta(days=days)).delete()
    return deleted
