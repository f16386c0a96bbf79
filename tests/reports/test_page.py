"""The campaign report: its numbers, its page in the admin, and its constant query count."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Attribution, Decision, Enrollment, Message, Step
from campaigns.reports.campaign import campaign_report
from tests.engine.conftest import T0, make_campaign
from tests.factories import make_site
from tracking.models import Profile

pytestmark = pytest.mark.django_db

NOW = T0 + timedelta(days=1)


def url(campaign) -> str:
    return f"/admin/campaigns/campaign/{campaign.pk}/report/"


def enroll(campaign, n: int, *, holdout: bool, converted: int, emailed: int = 0, start: int = 0):
    """`n` people enrolled at T0; the first `converted` exit converted, the first `emailed`
    get an email at step 1 (delivered, opened, clicked in decreasing numbers)."""
    site = campaign.site
    profiles = Profile.objects.bulk_create(
        Profile(site=site, email=f"p{start + i}@example.com", first_seen_at=T0, last_seen_at=T0)
        for i in range(n)
    )
    enrollments = Enrollment.objects.bulk_create(
        Enrollment(
            site=site,
            campaign=campaign,
            profile=p,
            is_holdout=holdout,
            enrolled_at=T0,
            last_activity_at=T0,
            status="exited" if i < converted else ("control" if holdout else "completed"),
            exit_reason="converted" if i < converted else "",
        )
        for i, p in enumerate(profiles)
    )
    step = campaign.steps.get(position=0)
    decisions, messages = [], []
    for i, e in enumerate(enrollments):
        if holdout:
            outcome, reason = "control", "holdout"
        elif i < emailed:
            outcome, reason = "email", "emailed"
        else:
            outcome, reason = "retarget", "retargeted"
        decisions.append(
            Decision(
                site=site,
                campaign=campaign,
                step=step,
                position=0,
                enrollment=e,
                profile=e.profile,
                outcome=outcome,
                reason=reason,
                decided_at=T0 + timedelta(hours=1),
            )
        )
        if i < converted:
            decisions.append(
                Decision(
                    site=site,
                    campaign=campaign,
                    step=step,
                    position=1,
                    enrollment=e,
                    profile=e.profile,
                    outcome="exit",
                    reason="converted",
                    decided_at=T0 + timedelta(hours=2),
                )
            )
        if outcome == "email":
            messages.append(
                Message(
                    site=site,
                    campaign=campaign,
                    step=step,
                    position=0,
                    enrollment=e,
                    profile=e.profile,
                    to_email=e.profile.email,
                    status="sent",
                    created_at=T0,
                    sent_at=T0,
                    delivered_at=T0 if i < emailed - 1 else None,
                    opened_at=T0 if i < emailed - 2 else None,
                    clicked_at=T0 if i < emailed - 3 else None,
                )
            )
    Decision.objects.bulk_create(decisions)
    return Message.objects.bulk_create(messages)


@pytest.fixture
def campaign():
    campaign = make_campaign(
        make_site(), steps=[{"delay_minutes": 60}, {"delay_minutes": 1440}], holdout_percent=10
    )
    messages = enroll(campaign, 200, holdout=False, converted=30, emailed=10)
    enroll(campaign, 200, holdout=True, converted=10, start=1000)
    Attribution.objects.bulk_create(
        Attribution(
            site=campaign.site,
            message=m,
            event_id=n,
            ordered_at=T0,
            revenue=revenue,
            currency="EUR",
        )
        for n, (m, revenue) in enumerate(
            zip(messages[:2], [Decimal("40.00"), Decimal("2.50")], strict=True)
        )
    )
    return campaign


def test_the_report_counts_per_group_and_step(campaign):
    report = campaign_report(campaign, now=NOW)
    assert (report.treated, report.treated_converted) == (200, 30)
    assert (report.holdout, report.holdout_converted) == (200, 10)
    assert report.verdict.startswith("The campaign is lifting conversions by 10.0 points")
    assert (report.emailed, report.retargeted) == (10, 190)
    assert report.funnel == [
        ("Triggered (treated enrollments)", 200), ("Emailed or retargeted", 200), ("Email delivered", 9),
        ("Email opened", 8), ("Email clicked", 7), ("Converted", 30),
    ]  # fmt: skip
    first, second = report.steps
    assert (first.reached, first.emailed, first.retargeted, first.holdout) == (400, 10, 190, 200)
    assert (first.delivered, first.opened, first.clicked) == (9, 8, 7)
    assert first.orders == 2 and first.revenue == {"EUR": Decimal("42.50")}
    assert (second.reached, second.exited) == (40, 40)
    assert report.exits == [("converted", "Reached the campaign's goal", 40)]
    assert report.revenue == {"EUR": Decimal("42.50")}


def test_the_daily_series_covers_the_last_30_days(campaign):
    report = campaign_report(campaign, now=NOW)
    assert len(report.days) == 30
    assert report.days[-1].day == NOW.date()
    day = next(d for d in report.days if d.day == T0.date())
    assert (day.enrolled, day.emailed, day.retargeted, day.converted) == (400, 10, 190, 40)
    assert sum(d.enrolled for d in report.days) == 400


def test_the_report_makes_nine_queries(campaign, django_assert_num_queries):
    with django_assert_num_queries(9):
        campaign_report(campaign, now=NOW)


def test_a_deleted_step_still_shows_its_numbers(campaign):
    Step.objects.filter(campaign=campaign, position=1).delete()
    report = campaign_report(campaign, now=NOW)
    assert [s.label for s in report.steps] == ["Step 1", "Step 2 (deleted)"]
    assert report.steps[1].exited == 40


def test_a_superuser_sees_the_report_with_its_charts(admin_client, campaign):
    response = admin_client.get(url(campaign))
    assert response.status_code == 200
    html = response.content.decode()
    assert "The campaign is lifting conversions by 10.0 points (95 % CI 4.2 to 15.8 points)" in html
    assert html.count('<svg class="chart') == 2
    assert '<rect class="converted"' in html and '<rect class="funnel"' in html
    assert "<script" not in html.split('id="content-main"')[1]
    assert "campaigns/report.css" in html


def test_a_marketer_sees_the_report(client, django_user_model, campaign):
    user = django_user_model.objects.create_user("mia", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    response = client.get(url(campaign))
    assert response.status_code == 200
    assert "Per step" in response.content.decode()


def test_staff_without_campaign_permission_cannot_see_it(client, django_user_model, campaign):
    client.force_login(django_user_model.objects.create_user("sam", is_staff=True))
    assert client.get(url(campaign)).status_code == 403


def test_an_unknown_campaign_is_not_found(admin_client):
    assert admin_client.get("/admin/campaigns/campaign/999999/report/").status_code == 404


def test_the_change_page_and_list_link_to_the_report(admin_client, campaign):
    assert (
        url(campaign)
        in admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    )
    assert url(campaign) in admin_client.get("/admin/campaigns/campaign/").content.decode()


def test_an_empty_campaign_says_there_is_not_enough_data(admin_client):
    campaign = make_campaign(make_site(), holdout_percent=10)
    response = admin_client.get(url(campaign))
    assert response.status_code == 200
    assert "No holdout group" in response.content.decode()


def test_the_page_makes_as_many_queries_for_a_large_campaign_as_for_a_small_one(admin_client):
    small = make_campaign(make_site(), holdout_percent=10)
    enroll(small, 3, holdout=False, converted=1, emailed=1)
    large = make_campaign(
        make_site(), steps=[{"delay_minutes": 60}] * 3, holdout_percent=10, name="Large"
    )
    messages = enroll(large, 300, holdout=False, converted=50, emailed=100, start=100)
    enroll(large, 50, holdout=True, converted=5, start=1000)
    Attribution.objects.bulk_create(
        Attribution(site=large.site, message=m, event_id=n, ordered_at=T0, revenue=1)
        for n, m in enumerate(messages)
    )
    admin_client.get(url(small))  # warm the session and permission caches alike
    counts = []
    for campaign in (small, large):
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url(campaign)).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
    # The report's nine, whether the campaign is large (campaigns.reports.snapshots),
    # plus the admin's own: session, user, two-factor devices (twice), the campaign,
    # and whether the dev mailbox has mail (the admin's navigation).
    assert counts == [16, 16]
