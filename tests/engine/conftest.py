"""Builders for the campaign engine's tests: envelopes, campaigns, a clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from campaigns.models import Audience, Campaign, EmailTemplate, Enrollment, Step
from tracking.models import Profile, Site, Visitor
from tracking.storage import store_events

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def envelope(
    site: Site,
    name: str = "Product Viewed",
    *,
    at: datetime = T0,
    anonymous_id: str = "anon-1",
    type: str = "track",
    user_id: str = "",
    properties: dict | None = None,
    traits: dict | None = None,
    context: dict | None = None,
    email: str = "",
    email_verified: bool = False,
    consent: dict | None = None,
    gpc: bool = False,
    timezone: str = "",
    trust: int = 2,
) -> dict:
    """One event as the ingest API hands it to the flusher (see tracking.ingest).

    `trust` is tracking.trust's level: the secret key's (2) unless a test is about what
    a browser's claim may change (0), so the engine's tests see every field applied."""
    return {
        "site_id": site.id,
        "message_id": str(uuid.uuid4()),
        "type": type,
        "name": name if type in ("track", "page", "screen") else "",
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "previous_id": "",
        "timestamp": at.isoformat(),
        "received_at": at.isoformat(),
        "properties": properties or {},
        "traits": traits or {},
        "context": context or {},
        "email": email,
        "email_verified": email_verified,
        "consent": consent,
        "gpc": gpc,
        "timezone": timezone,
        "trust": trust,
    }


def track(site: Site, name: str, *, at: datetime = T0, **fields) -> dict:
    """Store one track event now (at its own time) and return its envelope."""
    event = envelope(site, name, at=at, **fields)
    store_events([event], now=at)
    return event


def identify(
    site: Site,
    *,
    anonymous_id: str = "anon-1",
    email: str = "ann@example.com",
    verified: bool = True,
    at: datetime = T0,
    user_id: str = "",
    **fields,
) -> dict:
    event = envelope(
        site,
        type="identify",
        at=at,
        anonymous_id=anonymous_id,
        user_id=user_id,
        traits={"email": email, **fields.pop("traits", {})},
        email=email,
        email_verified=verified,
        **fields,
    )
    store_events([event], now=at)
    return event


def profile_of(site: Site, anonymous_id: str = "anon-1") -> Profile:
    return (
        Visitor.objects.select_related("profile").get(site=site, anonymous_id=anonymous_id).profile
    )


def make_template(site: Site, name: str = "Your cart") -> EmailTemplate:
    return EmailTemplate.objects.create(
        site=site, name=name, subject="You left something", html="<p>Come back</p>"
    )


def make_audience(site: Site, name: str = "Cart abandoners", **fields) -> Audience:
    return Audience.objects.create(site=site, name=name, **fields)


def make_campaign(
    site: Site,
    *,
    steps: list[dict] | None = None,
    template: EmailTemplate | None = None,
    audience: Audience | None = None,
    **fields,
) -> Campaign:
    """An active abandoned-cart campaign; one step at 60 min, email else retarget."""
    defaults = {
        "name": "Abandoned cart",
        "status": Campaign.Status.ACTIVE,
        "trigger_event": "Product Added",
        "goal_event": "Order Completed",
        "holdout_percent": 0,
        "reentry_cooldown_hours": 0,
    }
    defaults.update(fields)
    campaign = Campaign.objects.create(site=site, **defaults)
    template = template if template is not None else make_template(site)
    audience = audience if audience is not None else make_audience(site)
    for position, step in enumerate(steps or [{"delay_minutes": 60}]):
        values = {"template": template, "audience": audience, **step}
        Step.objects.create(campaign=campaign, position=position, **values)
    return campaign


def enrollment_of(campaign: Campaign, site: Site, anonymous_id: str = "anon-1") -> Enrollment:
    return Enrollment.objects.get(campaign=campaign, profile=profile_of(site, anonymous_id))
