"""Builders for the audience tests: people, browsers and events as real rows."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection

from tracking.models import Profile, Site, Visitor

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
_seq = itertools.count(1)


def make_person(
    site: Site,
    *,
    email: str | None = None,
    verified: bool = True,
    advertising: bool | None = True,
    gpc: bool = False,
    phone: str | None = None,
    anonymous_ids: int = 1,
) -> Profile:
    n = next(_seq)
    consent = {} if advertising is None else {"advertising": advertising}
    profile = Profile.objects.create(
        site=site,
        email=email,
        email_verified=verified and email is not None,
        consent=consent,
        gpc=gpc,
        traits={"phone": phone} if phone else {},
        first_seen_at=T0,
        last_seen_at=T0,
    )
    for i in range(anonymous_ids):
        Visitor.objects.create(
            site=site, profile=profile, anonymous_id=f"anon-{n}-{i}",
            first_seen_at=T0, last_seen_at=T0,
        )  # fmt: skip
    return profile


def add_event(profile: Profile, name: str, at: datetime) -> None:
    """An event straight into the partitioned table (the flusher's job, not under test)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tracking_event (site_id, profile_id, message_id, type, name, timestamp,"
            " received_at) VALUES (%s, %s, %s, 'track', %s, %s, %s)",
            [profile.site_id, profile.id, str(uuid.uuid4()), name, at, at],
        )


# --- ad platforms (tests/audiences/test_platforms_*.py) --------------------------------

META_TOKEN = "EAAB-standin-token-0123456789"
GA4_SECRET = "ga4-standin-secret"
GA4_MEASUREMENT = "G-STANDIN42"


def give_browser(profile: Profile, *, fbp: str = "", fbc: str = "", ga: str = "",
                 ip: str = "203.0.113.7", ua: str = "Mozilla/5.0 (standin)", at=None):  # fmt: skip
    """The ad platforms' ids of this person's first browser, as the capture stores them."""
    from tracking.models import AdIdentifiers

    visitor = profile.visitors.order_by("id").first()
    return AdIdentifiers.objects.create(
        visitor=visitor, site=profile.site, fbp=fbp, fbc=fbc, ga_client_id=ga, client_ip=ip,
        user_agent=ua, updated_at=at or T0,
    )  # fmt: skip


def deliver(now: datetime, rounds: int = 1, *, step=None) -> None:
    """What the periodic task does, in this process; the clock moves `step` per round."""
    from datetime import timedelta

    from campaigns.audiences.platforms import outbox

    step = step or timedelta(minutes=10)
    for _ in range(rounds):
        outbox.batch_changes(now=now)
        for batch_id in outbox.claim_due(now=now):
            outbox.send_batch(batch_id, now=now)
        now += step


@pytest.fixture(autouse=True)
def _webhook_receivers_on_loopback(settings):
    """The audience tests deliver webhooks to real receivers on 127.0.0.1. Loopback is
    refused by reengage.outbound unless OUTBOUND_ALLOW_LOOPBACK is set explicitly (a
    test/development-only setting); tests of the refusal itself turn it off again."""
    settings.OUTBOUND_ALLOW_LOOPBACK = True
