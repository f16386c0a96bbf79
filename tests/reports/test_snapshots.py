"""Large campaigns' reports: computed by beat, read by the page, never shown stale."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Attribution, Enrollment, ReportSnapshot
from campaigns.reports import snapshots
from campaigns.reports.campaign import campaign_report
from campaigns.tasks.reports import refresh_report_snapshots
from tests.engine.conftest import make_campaign
from tests.factories import make_site
from tests.reports.test_page import enroll

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _large_from_ten(settings):
    settings.REPORT_SNAPSHOT_MIN_ENROLLMENTS = 10
    settings.REPORT_SNAPSHOT_SECONDS = 300


@pytest.fixture
def large():
    campaign = make_campaign(make_site(), holdout_percent=10, name="Large")
    messages = enroll(campaign, 12, holdout=False, converted=3, emailed=4)
    enroll(campaign, 5, holdout=True, converted=1, start=100)
    Attribution.objects.create(site=campaign.site, message=messages[0], event_id=1,
                               ordered_at=messages[0].created_at, revenue="12.50", currency="EUR")  # fmt: skip
    return campaign


def url(campaign) -> str:
    return f"/admin/campaigns/campaign/{campaign.pk}/report/"


def test_a_stored_report_reads_back_equal_to_the_live_one(large):
    now = timezone.now()
    live = campaign_report(large, now=now)
    data = json.loads(json.dumps(snapshots.to_json(live), cls=DjangoJSONEncoder))
    stored = snapshots.from_json(large, data)
    assert stored == live
    assert stored.steps[0].revenue == {"EUR": Decimal("12.50")}


def test_beat_computes_large_campaigns_only(large):
    small = make_campaign(make_site(), name="Small")
    enroll(small, 3, holdout=False, converted=1, start=500)
    assert refresh_report_snapshots() == 1
    assert list(ReportSnapshot.objects.values_list("campaign", flat=True)) == [large.pk]
    assert refresh_report_snapshots() == 0  # fresh: not computed again


def test_the_page_of_a_large_campaign_shows_the_snapshot_and_its_age(admin_client, large):
    snapshots.refresh(large, now=timezone.now())
    Enrollment.objects.filter(campaign=large, is_holdout=False).update(is_holdout=True)
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(url(large)).content.decode()
    assert "Numbers as of" in html and "recomputed every 5 minutes" in html
    assert "<th>Treated (got the campaign)</th><td>12</td>" in html  # as computed
    assert not any("GROUP BY" in q["sql"] for q in queries.captured_queries)


def test_a_stale_snapshot_is_recomputed_by_the_page(admin_client, large):
    snapshots.refresh(large, now=timezone.now() - timedelta(minutes=16))
    Enrollment.objects.filter(campaign=large, is_holdout=False).update(is_holdout=True)
    html = admin_client.get(url(large)).content.decode()
    assert "Numbers as of" not in html
    assert "<th>Treated (got the campaign)</th><td>0</td>" in html
    assert ReportSnapshot.objects.get().computed_at > timezone.now() - timedelta(minutes=1)


def test_a_small_campaign_is_computed_live(admin_client):
    campaign = make_campaign(make_site())
    enroll(campaign, 3, holdout=False, converted=1)
    html = admin_client.get(url(campaign)).content.decode()
    assert "Numbers as of" not in html and not ReportSnapshot.objects.exists()
