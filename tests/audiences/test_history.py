"""An audience's member count over time: folded from the change log, right for past
days whenever the fold ran, and drawn on the audience's admin page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.audiences import membership
from campaigns.audiences.history import fold_days, member_history
from campaigns.models import AudienceDay, AudienceMember
from campaigns.reports.charts import members_chart
from tests.engine.conftest import T0, make_audience
from tests.factories import make_site
from tracking.models import Profile

pytestmark = pytest.mark.django_db

NOW = T0 + timedelta(days=10)  # 2026-12-07 10:00 UTC


def day(n: int, hour: int = 12):
    """`n` days before NOW's day, at `hour` o'clock."""
    return (NOW - timedelta(days=n)).replace(hour=hour)


@pytest.fixture
def audience():
    return make_audience(make_site())


def people(audience, n: int) -> list[int]:
    return [
        p.id
        for p in Profile.objects.bulk_create(
            Profile(site=audience.site, first_seen_at=T0, last_seen_at=T0) for _ in range(n)
        )
    ]


def add(audience, ids, at):
    membership.add_members([(audience.id, p) for p in ids], now=at)


def remove(ids, at, reason="expired"):
    membership.remove_profiles(ids, now=at, reason=reason)


def members_by_day(audience, days=10) -> list[int]:
    return [d.members for d in member_history(audience.id, now=NOW, days=days)]


def true_counts(audience, days=10) -> list[int]:
    """Brute force from the member rows themselves: who was in at each day's end."""
    counts = []
    for d in member_history(audience.id, now=NOW, days=days):
        end = day(0).replace(hour=0) - timedelta(days=(NOW.date() - d.day).days - 1)
        counts.append(
            AudienceMember.objects.filter(audience=audience, added_at__lt=end)
            .exclude(removed_at__lt=end)
            .count()
        )
    return counts


@pytest.fixture
def history(audience):
    """Five join 8 days ago, three more 5 days ago, two leave 3 days ago, one joins today."""
    ids = people(audience, 9)
    add(audience, ids[:5], day(8))
    add(audience, ids[5:8], day(5))
    remove(ids[:2], day(3))
    add(audience, ids[8:], day(0, hour=9))
    return ids


def test_the_history_counts_members_at_each_day_end_before_any_fold(audience, history):
    assert members_by_day(audience) == [0, 5, 5, 5, 8, 8, 6, 6, 6, 7]
    assert members_by_day(audience) == true_counts(audience)
    today = member_history(audience.id, now=NOW, days=10)[-1]
    assert (today.day, today.members, today.added, today.removed) == (NOW.date(), 7, 1, 0)


def test_folding_changes_nothing_the_chart_shows_and_folds_each_closed_day(audience, history):
    fold_days(now=NOW)
    assert members_by_day(audience) == [0, 5, 5, 5, 8, 8, 6, 6, 6, 7]
    days = AudienceDay.objects.filter(audience=audience).order_by("day")
    assert [d.day for d in days] == [day(n).date() for n in range(8, 0, -1)]  # not today
    assert [(d.added, d.removed) for d in days] == [
        (5, 0), (0, 0), (0, 0), (3, 0), (0, 0), (0, 2), (0, 0), (0, 0),
    ]  # fmt: skip


def test_folding_twice_is_harmless(audience, history):
    fold_days(now=NOW)
    first = list(AudienceDay.objects.values_list("day", "added", "removed").order_by("day"))
    fold_days(now=NOW)
    fold_days(now=NOW + timedelta(hours=1))
    assert list(AudienceDay.objects.values_list("day", "added", "removed").order_by("day")) == first


def test_a_change_recorded_later_for_a_past_day_is_folded_into_that_day(audience, history):
    fold_days(now=NOW)
    late = people(audience, 2)
    add(audience, late, day(7))  # back-dated: a day folded long ago
    assert fold_days(now=NOW) >= 7
    assert members_by_day(audience) == [0, 5, 7, 7, 10, 10, 8, 8, 8, 9]
    assert members_by_day(audience) == true_counts(audience)


def test_today_is_counted_live_and_folded_tomorrow(audience, history):
    fold_days(now=NOW)
    remove(history[8:], day(0, hour=11))
    assert members_by_day(audience)[-1] == 6
    tomorrow = NOW + timedelta(days=1)
    fold_days(now=tomorrow)
    last = AudienceDay.objects.filter(audience=audience).order_by("day").last()
    assert (last.day, last.added, last.removed) == (NOW.date(), 1, 1)
    assert member_history(audience.id, now=tomorrow, days=2)[0].members == 6


def test_a_change_stamped_after_today_counts_in_todays_bar(admin_client, audience):
    """A worker whose clock runs ahead (or a decision made for a later clock) records a
    join dated tomorrow: the chart's "now" still counts it, as the audience list does."""
    from django.utils import timezone

    add(audience, people(audience, 2), timezone.now() - timedelta(days=1))
    add(audience, people(audience, 1), timezone.now() + timedelta(days=1))
    history = member_history(audience.id, now=timezone.now(), days=3)
    assert [d.members for d in history] == [0, 2, 3]
    assert (history[-1].added, history[-1].removed) == (1, 0)
    page = admin_client.get(f"/admin/campaigns/audience/{audience.pk}/change/").content.decode()
    assert "3 members now" in page
    listing = admin_client.get("/admin/campaigns/audience/").content.decode()
    assert '<td class="field-members">3</td>' in listing


def test_the_changelist_shows_members_now_without_counting_the_member_table(
    admin_client, audience, history
):
    fold_days(now=NOW)
    html = admin_client.get("/admin/campaigns/audience/").content.decode()
    assert '<td class="field-members">' in html
    # Folded days plus what happened since: 7 with today's live change (real clock:
    # every change here is in the past, so all of them count).
    assert '<td class="field-members">7</td>' in html


def test_the_audience_page_draws_the_chart_for_marketers(client, django_user_model, audience):
    ids = people(audience, 3)
    add(audience, ids, T0)
    user = django_user_model.objects.create_user("mia", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    response = client.get(f"/admin/campaigns/audience/{audience.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<rect class="members"') == 90
    assert "3 members now" in html
    assert "campaigns/report.css" in html
    # CSP (script-src 'self'): no inline script, no event handler attributes.
    scripts = html.split("<script")[1:]
    assert all(" src=" in s.split(">")[0] or "application/json" in s.split(">")[0] for s in scripts)
    chart = html.split('<div class="audience-chart">')[1].split("</div>")[0]
    assert "<script" not in chart and not re.search(r"\son\w+=", chart)


def test_the_chart_page_costs_the_same_queries_for_a_large_audience(admin_client):
    small, large = make_audience(make_site()), make_audience(make_site(), name="Large")
    add(small, people(small, 1), T0)
    for n in range(20):
        add(large, people(large, 20), T0 - timedelta(days=n))
    fold_days(now=NOW)
    counts = []
    for audience in (small, large):
        with CaptureQueriesContext(connection) as queries:
            admin_client.get(f"/admin/campaigns/audience/{audience.pk}/change/")
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_chart_labels_today_and_scales_to_the_peak(audience, history):
    chart = members_chart(member_history(audience.id, now=NOW, days=10), label_every=4)
    assert chart.peak == 8
    assert [label.text for label in chart.labels][-1] == f"{NOW:%d %b}"
    assert [label.anchor for label in chart.labels][-1] == "end"
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.height == 160 and tallest.y == 0
    assert chart.bars[0].height == 0
    assert chart.bars[-1].title == f"{NOW:%d %b}: 7 members (+1 / −0)"


def test_beat_folds_the_days_every_hour(audience, settings):
    from django.utils import timezone

    from campaigns.tasks.audiences import fold_audience_days

    entry = settings.CELERY_BEAT_SCHEDULE["fold-audience-days"]
    assert entry == {"task": "campaigns.tasks.audiences.fold_audience_days", "schedule": 3600}
    add(audience, people(audience, 2), timezone.now() - timedelta(days=3))
    assert fold_audience_days() == 3  # three closed days, up to yesterday
    assert sum(AudienceDay.objects.values_list("added", flat=True)) == 2
