"""The report says what it counts: enrollments and people apart, the treated rate without a holdout."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from campaigns.models import Enrollment, ReportSnapshot
from campaigns.reports.campaign import campaign_report
from campaigns.reports.snapshots import from_json, refresh
from tests.engine.conftest import T0, make_campaign
from tests.factories import make_site
from tests.reports.test_page import NOW, enroll, url

pytestmark = pytest.mark.django_db


def group_row(page: str, group: str) -> list[str]:
    row = re.search(rf'<tr class="{group}">(.*?)</tr>', page, re.S).group(1)
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


@pytest.fixture
def no_holdout():
    campaign = make_campaign(make_site(), holdout_percent=0)
    enroll(campaign, 6, holdout=False, converted=1)
    return campaign


def test_a_person_who_entered_twice_is_two_enrollments_and_one_person(no_holdout):
    first = Enrollment.objects.filter(campaign=no_holdout).order_by("pk").first()
    Enrollment.objects.create(
        site=no_holdout.site, campaign=no_holdout, profile=first.profile, is_holdout=False,
        enrolled_at=T0 + timedelta(hours=5), last_activity_at=T0 + timedelta(hours=5),
        status="completed",
    )  # fmt: skip
    report = campaign_report(no_holdout, now=NOW)
    assert (report.treated, report.treated_people, report.people) == (7, 6, 6)


def test_the_treated_rate_is_shown_without_a_holdout_and_there_is_no_lift(admin_client, no_holdout):
    page = admin_client.get(url(no_holdout)).content.decode()
    assert group_row(page, "treated") == ["6", "6", "1", "16.7 %"]
    assert group_row(page, "holdout") == ["0", "0", "0", "– (no holdout)"]
    assert '<tr class="lift">' not in page
    assert "No holdout group, so the lift cannot be measured" in page


def test_with_a_holdout_both_rates_and_the_lift_are_shown(admin_client):
    campaign = make_campaign(make_site(), holdout_percent=50)
    enroll(campaign, 10, holdout=False, converted=4)
    enroll(campaign, 10, holdout=True, converted=2, start=100)
    page = admin_client.get(url(campaign)).content.decode()
    assert group_row(page, "treated")[-1] == "40.0 %"
    assert group_row(page, "holdout")[-1] == "20.0 %"
    assert "20.0 points" in re.search(r'<tr class="lift">(.*?)</tr>', page, re.S).group(1)


def stored_snapshot(campaign) -> dict:
    refresh(campaign, now=NOW)
    return ReportSnapshot.objects.get(campaign=campaign).data


def test_a_snapshot_keeps_the_people_counts(no_holdout):
    again = from_json(no_holdout, stored_snapshot(no_holdout))
    assert (again.treated_people, again.people) == (6, 6)
    assert f"{again.treated_rate:.1f}" == "16.7"


def test_a_snapshot_stored_before_the_people_counts_still_loads(no_holdout):
    old = stored_snapshot(no_holdout)
    for name in ("treated_people", "holdout_people", "people"):
        del old[name]
    assert from_json(no_holdout, old).treated == 6


def test_revenue_is_written_as_the_emails_write_money(admin_client, no_holdout):
    from decimal import Decimal

    from campaigns.reports.campaign import revenue_in_words

    assert revenue_in_words({}) == "0"
    assert revenue_in_words({"EUR": Decimal("42.5"), "USD": Decimal("10")}) == "€42.50, $10.00"
    assert revenue_in_words({"?": Decimal("3")}) == "3.00"
    page = admin_client.get(url(no_holdout)).content.decode()
    assert "<th>Revenue credited to an email</th><td>0</td>" in page
