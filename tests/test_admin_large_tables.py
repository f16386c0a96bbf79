"""Admin lists that stay fast on tables with millions of rows: bounded counts, no
whole-table DISTINCT for filters, searches through indexes (bench/report_bench.py
measures them at scale)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.audiences import membership
from campaigns.models import Decision, Enrollment, Message
from reengage import admin_paging
from reengage.admin_paging import LargeTablePaginator
from tests.engine.conftest import T0, identify, make_campaign, profile_of
from tests.factories import make_site
from tracking.models import Profile

pytestmark = pytest.mark.django_db

LISTS = [
    "/admin/tracking/profile/",
    "/admin/campaigns/message/",
    "/admin/campaigns/enrollment/",
    "/admin/campaigns/decision/",
    "/admin/campaigns/audiencemember/",
]


@pytest.fixture
def site():
    return make_site()


def people(site, n: int) -> list[Profile]:
    return Profile.objects.bulk_create(
        Profile(site=site, email=f"p{i}@example.com", first_seen_at=T0, last_seen_at=T0)
        for i in range(n)
    )


def test_the_paginator_counts_exactly_up_to_its_limit(site, monkeypatch):
    monkeypatch.setattr(admin_paging, "EXACT_UP_TO", 5)
    people(site, 3)
    assert LargeTablePaginator(Profile.objects.order_by("pk"), 2).count == 3


def test_beyond_its_limit_the_paginator_takes_the_planner_s_estimate(site, monkeypatch):
    monkeypatch.setattr(admin_paging, "EXACT_UP_TO", 5)
    people(site, 40)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tracking_profile")
    with CaptureQueriesContext(connection) as queries:
        count = LargeTablePaginator(Profile.objects.order_by("pk"), 10).count
    assert 30 <= count <= 50
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT", "EXPLAIN"]
    assert "LIMIT 6" in queries.captured_queries[0]["sql"]


@pytest.mark.parametrize("url", LISTS)
def test_lists_count_no_further_than_the_limit_and_read_no_distinct_values(admin_client, url):
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(url).status_code == 200
    for query in queries.captured_queries:
        sql = query["sql"]
        assert "DISTINCT" not in sql, sql
        if "COUNT(" in sql:
            assert "LIMIT" in sql, sql


def test_the_campaign_list_counts_active_enrollments(admin_client, site):
    campaign = make_campaign(site)
    statuses = ["active", "active", "exited"]
    Enrollment.objects.bulk_create(
        Enrollment(site=site, campaign=campaign, profile=p, status=s, enrolled_at=T0,
                   last_activity_at=T0)
        for p, s in zip(people(site, 3), statuses, strict=True)
    )  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get("/admin/campaigns/campaign/").content.decode()
    assert '<td class="field-active_enrollments">2</td>' in html
    # A correlated count of the active ones (an index), not a join grouping all of them.
    assert not any('JOIN "campaigns_enrollment"' in q["sql"] for q in queries.captured_queries)


def test_decisions_filter_by_reason_in_words(admin_client, site):
    campaign = make_campaign(site)
    (person,) = people(site, 1)
    enrollment = Enrollment.objects.create(site=site, campaign=campaign, profile=person,
                                           enrolled_at=T0, last_activity_at=T0)  # fmt: skip
    for position, reason in enumerate(["quiet_hours", "emailed"]):
        Decision.objects.create(site=site, campaign=campaign, position=position,
                                enrollment=enrollment, profile=person, outcome="email",
                                reason=reason, decided_at=T0)  # fmt: skip
    html = admin_client.get("/admin/campaigns/decision/").content.decode()
    assert "Quiet hours in the visitor&#x27;s time zone" in html  # the filter's choice
    filtered = admin_client.get("/admin/campaigns/decision/", {"reason": "emailed"})
    assert filtered.context["cl"].result_count == 1


def test_members_filter_by_what_added_them(admin_client, site):
    campaign = make_campaign(site)
    audience_id = campaign.steps.get().audience_id
    first, second = people(site, 2)
    membership.add_members([(audience_id, first.id)], now=T0, reason="campaign")
    membership.add_members([(audience_id, second.id)], now=T0, reason="rule")
    response = admin_client.get("/admin/campaigns/audiencemember/", {"added_by": "rule"})
    assert [m.profile_id for m in response.context["cl"].result_list] == [second.id]


def test_messages_are_found_by_exact_address_or_esp_id(admin_client, site):
    identify(site, email="Ann@Example.com", at=T0)
    ann = profile_of(site)
    Message.objects.create(site=site, profile=ann, to_email="Ann@Example.com",
                           esp_message_id="esp-1")  # fmt: skip
    Message.objects.create(site=site, to_email="bob@example.com", esp_message_id="esp-2")

    def found(term):
        response = admin_client.get("/admin/campaigns/message/", {"q": term})
        return sorted(m.to_email for m in response.context["cl"].result_list)

    assert found("ann@example.com") == ["Ann@Example.com"]
    assert found("esp-2") == ["bob@example.com"]
    assert found("example.com") == []


def test_enrollments_are_found_by_exact_address(admin_client, site):
    campaign = make_campaign(site)
    ann, bob = people(site, 2)
    for person in (ann, bob):
        Enrollment.objects.create(site=site, campaign=campaign, profile=person,
                                  enrolled_at=T0, last_activity_at=T0)  # fmt: skip
    response = admin_client.get("/admin/campaigns/enrollment/", {"q": "P0@example.com"})
    assert [e.profile_id for e in response.context["cl"].result_list] == [ann.id]
