"""Reports of large campaigns, computed in the background and read by the page.

`campaigns.reports.campaign.campaign_report` aggregates a campaign's enrollments,
decisions and messages: a fixed number of queries, but each reads every row of
the campaign — seconds for a campaign with hundreds of thousands of
enrollments, on every view. For campaigns with at least
REPORT_SNAPSHOT_MIN_ENROLLMENTS enrollments a beat task computes the report
every REPORT_SNAPSHOT_SECONDS and stores it (ReportSnapshot, JSON); the page
reads that and says how old it is. Smaller campaigns are computed live, so a
new campaign's numbers move as soon as something happens. A snapshot older than
three intervals (beat stopped) is not shown: the page computes the report live
and stores it.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings

from campaigns.models import Campaign, Enrollment, ReportSnapshot
from campaigns.reports.campaign import Day, Lift, Report, StepRow, campaign_report


def is_large(campaign: Campaign) -> bool:
    """At least REPORT_SNAPSHOT_MIN_ENROLLMENTS enrollments (counts no further than that)."""
    limit = settings.REPORT_SNAPSHOT_MIN_ENROLLMENTS
    return Enrollment.objects.filter(campaign=campaign).order_by()[:limit].count() >= limit


def to_json(report: Report) -> dict:
    data = dataclasses.asdict(report)
    del data["campaign"]
    return data


def from_json(campaign: Campaign, data: dict) -> Report:
    def revenue(amounts: dict) -> dict[str, Decimal]:
        return {currency: Decimal(amount) for currency, amount in amounts.items()}

    return Report(
        **{**data, "campaign": campaign,
           "exits": [tuple(exit) for exit in data["exits"]],
           "steps": [StepRow(**{**s, "revenue": revenue(s["revenue"])}) for s in data["steps"]],
           "days": [Day(**{**d, "day": date.fromisoformat(d["day"])}) for d in data["days"]],
           "lift": Lift(**data["lift"]) if data["lift"] else None},
    )  # fmt: skip


def refresh(campaign: Campaign, *, now: datetime) -> Report:
    """Compute the report now and store it as the campaign's snapshot."""
    started = time.monotonic()
    report = campaign_report(campaign, now=now)
    ReportSnapshot.objects.update_or_create(
        campaign=campaign,
        defaults={"computed_at": now, "seconds": time.monotonic() - started,
                  "data": to_json(report)},
    )  # fmt: skip
    return report


def refresh_large(*, now: datetime) -> int:
    """Recompute the snapshot of every large campaign whose snapshot is due."""
    due = now - timedelta(seconds=settings.REPORT_SNAPSHOT_SECONDS / 2)
    refreshed = 0
    for campaign in Campaign.objects.select_related("site").order_by("id"):
        snapshot = ReportSnapshot.objects.filter(campaign=campaign).only("computed_at").first()
        if snapshot is not None and snapshot.computed_at > due:
            continue
        if is_large(campaign):
            refresh(campaign, now=now)
            refreshed += 1
    return refreshed


def page_report(campaign: Campaign, *, now: datetime) -> tuple[Report, datetime | None]:
    """The report the page shows, and when it was computed (None: just now, live)."""
    if not is_large(campaign):
        return campaign_report(campaign, now=now), None
    snapshot = ReportSnapshot.objects.filter(campaign=campaign).first()
    stale = now - timedelta(seconds=3 * settings.REPORT_SNAPSHOT_SECONDS)
    if snapshot is None or snapshot.computed_at < stale:
        return refresh(campaign, now=now), None
    return from_json(campaign, snapshot.data), snapshot.computed_at
