"""Rules: "viewed a product in the last 7 days and did not order", set-based."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns.audiences import membership
from campaigns.audiences.rules import evaluate_rule
from campaigns.models import Audience, AudienceChange, AudienceMember, AudienceRule
from tests.audiences.conftest import T0, add_event, make_person
from tests.factories import make_site

NOW = T0 + timedelta(days=10)


@pytest.fixture
def site(db):
    return make_site()


@pytest.fixture
def rule(site):
    audience = Audience.objects.create(site=site, name="Viewed, no order")
    return AudienceRule.objects.create(audience=audience)  # Product Viewed, 7 days, no order


def members(rule) -> set[int]:
    return set(
        AudienceMember.objects.filter(audience=rule.audience, removed_at=None).values_list(
            "profile_id", flat=True
        )
    )


def test_a_recent_viewer_who_did_not_order_joins(rule, site):
    viewer = make_person(site)
    add_event(viewer, "Product Viewed", NOW - timedelta(days=2))
    result = evaluate_rule(rule.id, now=NOW)
    assert (result.added, result.removed) == (1, 0)
    assert members(rule) == {viewer.id}
    assert AudienceMember.objects.get(profile=viewer).added_by == "rule"


def test_buyers_old_viewers_and_other_events_do_not_join(rule, site):
    buyer, old, other_event = make_person(site), make_person(site), make_person(site)
    add_event(buyer, "Product Viewed", NOW - timedelta(days=2))
    add_event(buyer, "Order Completed", NOW - timedelta(days=1))
    add_event(old, "Product Viewed", NOW - timedelta(days=8))
    add_event(other_event, "Product Added", NOW - timedelta(days=1))
    assert evaluate_rule(rule.id, now=NOW).added == 0
    assert members(rule) == set()


def test_people_who_may_not_see_ads_do_not_join(rule, site):
    refused, gpc = make_person(site, advertising=False), make_person(site, gpc=True)
    for person in (refused, gpc):
        add_event(person, "Product Viewed", NOW - timedelta(days=1))
    assert evaluate_rule(rule.id, now=NOW).added == 0


def test_on_an_opt_in_site_only_people_who_consented_join(rule, site):
    site.consent_mode = "opt-in"
    site.save()
    unknown, consented = make_person(site, advertising=None), make_person(site, advertising=True)
    for person in (unknown, consented):
        add_event(person, "Product Viewed", NOW - timedelta(days=1))
    evaluate_rule(rule.id, now=NOW)
    assert members(rule) == {consented.id}


def test_a_rule_without_an_exclusion_takes_buyers_too(rule, site):
    rule.unless_event = ""
    rule.save()
    buyer = make_person(site)
    add_event(buyer, "Product Viewed", NOW - timedelta(days=2))
    add_event(buyer, "Order Completed", NOW - timedelta(days=1))
    assert evaluate_rule(rule.id, now=NOW).added == 1


def test_another_sites_events_do_not_count(rule):
    stranger = make_person(make_site(name="Other"))
    add_event(stranger, "Product Viewed", NOW - timedelta(days=1))
    assert evaluate_rule(rule.id, now=NOW).added == 0


def test_a_member_who_orders_leaves_with_a_removal_and_stays_out(rule, site):
    viewer = make_person(site)
    add_event(viewer, "Product Viewed", NOW - timedelta(days=2))
    evaluate_rule(rule.id, now=NOW)
    add_event(viewer, "Order Completed", NOW + timedelta(hours=1))
    result = evaluate_rule(rule.id, now=NOW + timedelta(hours=2))
    assert (result.added, result.removed) == (0, 1)
    assert members(rule) == set()
    assert AudienceMember.objects.get(profile=viewer).removal_reason == "no_longer_matches"
    assert evaluate_rule(rule.id, now=NOW + timedelta(hours=3)) == type(result)(0, 0)


def test_re_evaluating_records_no_new_changes(rule, site):
    viewer = make_person(site)
    add_event(viewer, "Product Viewed", NOW - timedelta(days=2))
    evaluate_rule(rule.id, now=NOW)
    evaluate_rule(rule.id, now=NOW + timedelta(minutes=15))
    assert AudienceChange.objects.filter(audience=rule.audience).count() == 1


def test_a_campaigns_member_is_not_removed_by_the_rule(rule, site):
    person = make_person(site)
    add_event(person, "Product Viewed", NOW - timedelta(days=2))
    evaluate_rule(rule.id, now=NOW)
    membership.add_members([(rule.audience_id, person.id)], now=NOW, reason="campaign")
    add_event(person, "Order Completed", NOW + timedelta(hours=1))
    assert evaluate_rule(rule.id, now=NOW + timedelta(hours=2)).removed == 0
    assert members(rule) == {person.id}


def test_evaluation_takes_the_same_queries_for_any_number_of_people(
    rule, site, django_assert_num_queries
):
    for _ in range(30):
        add_event(make_person(site), "Product Viewed", NOW - timedelta(days=1))
    # savepoint, lock the rule, remove, add, save the evaluation time, release
    with django_assert_num_queries(6):
        assert evaluate_rule(rule.id, now=NOW).added == 30
