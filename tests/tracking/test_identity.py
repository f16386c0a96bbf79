"""Visitors, profiles and identity stitching in the flusher."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.factories import make_site, segment_event
from tracking.ingest import SiteKey, parse_batch
from tracking.models import Event, Profile, Visitor
from tracking.storage import store_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    return make_site()


def envelopes(site, *calls, trusted=False):
    key = SiteKey(site.id, trusted, ("shop.test",), True, 395, (site.secret_key,), 10**6)
    events, _ = parse_batch({"batch": list(calls)}, key=key, received_at=datetime.now(UTC),
                            client_ip="192.0.2.1", single_type=None)  # fmt: skip
    return events


def store(site, *calls, trusted=False):
    return store_events(envelopes(site, *calls, trusted=trusted), now=datetime.now(UTC))


def profile_of(site, anonymous_id):
    return Visitor.objects.get(site=site, anonymous_id=anonymous_id).profile


def test_a_new_anonymous_id_gets_a_visitor_and_a_profile(site):
    store(site, segment_event(anonymousId="a1"), segment_event(anonymousId="a1"))
    assert Visitor.objects.filter(site=site).count() == 1
    assert Profile.objects.filter(site=site).count() == 1
    assert set(Event.objects.values_list("profile_id", flat=True)) == {profile_of(site, "a1").id}


def test_identify_gives_the_anonymous_profile_its_user_id(site):
    store(site, segment_event(anonymousId="a1"))
    anonymous = profile_of(site, "a1")
    store(site, segment_event("identify", anonymousId="a1", userId="u1", traits={"name": "Ann"}))
    profile = profile_of(site, "a1")
    assert profile.id == anonymous.id
    assert profile.user_id == "u1"
    assert profile.traits == {"name": "Ann"}


def test_a_known_user_on_a_second_device_merges_into_one_profile(site):
    # The second device speaks for a known person, so it proves it (tracking.trust); an
    # unproven claim stays on its own browser (tests/tracking/test_trust_model.py).
    proof = site.identity_proof("u1")
    store(site, segment_event("identify", anonymousId="laptop", userId="u1",
                              traits={"user_hash": proof}))  # fmt: skip
    store(site, segment_event(anonymousId="phone", event="Product Added"))
    phone_profile = profile_of(site, "phone").id
    result = store(site, segment_event("identify", anonymousId="phone", userId="u1",
                                       traits={"user_hash": proof}))  # fmt: skip
    assert result.identity_changes == 1
    person = Profile.objects.get(site=site, user_id="u1")
    assert profile_of(site, "phone") == person == profile_of(site, "laptop")
    # The phone's earlier events now belong to the person.
    assert Event.objects.filter(profile_id=person.id, name="Product Added").count() == 1
    assert Profile.objects.get(id=phone_profile).merged_into_id == person.id


def test_a_server_side_event_with_only_a_user_id_lands_on_the_person(site):
    store(site, segment_event("identify", anonymousId="a1", userId="u1"))
    store(site, {**segment_event(event="Order Completed"), "anonymousId": None, "userId": "u1"},
          trusted=True)  # fmt: skip
    person = Profile.objects.get(site=site, user_id="u1")
    assert Event.objects.filter(profile_id=person.id, name="Order Completed").count() == 1


def test_alias_links_a_previous_id_to_the_user(site):
    store(site, segment_event(anonymousId="old-anon"))
    # A browser's alias names its own anonymous id (analytics.js sends it as both).
    store(site, {"type": "alias", "userId": "u9", "previousId": "old-anon",
                 "anonymousId": "old-anon", "messageId": "al-1"})  # fmt: skip
    assert profile_of(site, "old-anon").user_id == "u9"


def test_another_person_signing_in_on_a_shared_browser_gets_their_own_profile(site):
    store(site, segment_event("identify", anonymousId="shared", userId="ann"))
    store(site, segment_event("identify", anonymousId="shared", userId="bob"))
    assert profile_of(site, "shared").user_id == "bob"
    assert Profile.objects.filter(site=site, user_id="ann").exists()


def test_traits_merge_in_timestamp_order(site):
    store(
        site,
        segment_event("identify", userId="u1", traits={"plan": "free", "city": "Oslo"},
                      timestamp="2026-11-29T10:00:00Z"),
        segment_event("identify", userId="u1", traits={"plan": "pro"},
                      timestamp="2026-11-29T11:00:00Z"),
        trusted=True,
    )  # fmt: skip
    assert Profile.objects.get(user_id="u1").traits == {"plan": "pro", "city": "Oslo"}


def test_consent_gpc_and_timezone_flow_into_the_profile(site):
    store(site, segment_event(anonymousId="a1", context={
        "consent": {"email": True, "advertising": False}, "gpc": True,
        "timezone": "Europe/Berlin"}))  # fmt: skip
    profile = profile_of(site, "a1")
    assert profile.consent == {"email": True, "advertising": False}
    assert profile.gpc is True
    assert profile.timezone == "Europe/Berlin"
    store(site, segment_event(anonymousId="a1", context={"consent": {"email": False}}))
    profile.refresh_from_db()
    assert profile.consent == {"email": False, "advertising": False}
    assert profile.gpc is False


def test_storing_the_same_batch_twice_changes_nothing(site):
    calls = [
        segment_event(anonymousId="a1"),
        segment_event("identify", anonymousId="a1", userId="u"),
    ]
    events = envelopes(site, *calls)
    first = store_events(events, now=datetime.now(UTC))
    second = store_events(events, now=datetime.now(UTC))
    assert (first.stored, second.stored, second.duplicates) == (2, 0, 2)
    assert Event.objects.count() == 2


def test_the_flush_query_count_is_constant_in_the_batch_size(site, django_assert_max_num_queries):
    small = envelopes(site, *[segment_event(anonymousId=f"s{i}") for i in range(5)])
    large = envelopes(site, *[segment_event(anonymousId=f"l{i}") for i in range(400)])
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        store_events(small, now=datetime.now(UTC))
    with CaptureQueriesContext(connection) as many:
        store_events(large, now=datetime.now(UTC))
    assert len(many) == len(few)
    # 29: the statements (the trust model's one and tracking_adidentifiers' one among
    # them, see tests/tracking/test_ad_ids.py), plus the savepoint (and its release)
    # around the dedupe insert.
    with django_assert_max_num_queries(29):
        store_events(envelopes(site, segment_event(anonymousId="x")), now=datetime.now(UTC))


def test_within_one_batch_the_latest_gpc_and_timezone_win_whatever_the_arrival_order(site):
    # The flusher aggregates a pass per profile: the event with the latest timestamp
    # decides GPC and the time zone, not the order the events arrived in.
    store(
        site,
        segment_event(anonymousId="a1", timestamp="2026-11-28T11:00:00Z",
                      context={"gpc": False, "timezone": "Asia/Tokyo"}),
        segment_event(anonymousId="a1", timestamp="2026-11-28T10:00:00Z",
                      context={"gpc": True, "timezone": "Europe/Berlin"}),
        segment_event(anonymousId="a1", timestamp="2026-11-28T12:00:00Z"),
        trusted=True,
    )  # fmt: skip
    profile = profile_of(site, "a1")
    # The 12:00 event carries no time zone: the latest one that does (11:00) counts.
    assert (profile.gpc, profile.timezone) == (False, "Asia/Tokyo")
    store(
        site,
        segment_event(anonymousId="a1", timestamp="2026-11-28T13:00:00Z",
                      context={"gpc": True}),
        segment_event(anonymousId="a1", timestamp="2026-11-28T12:30:00Z",
                      context={"gpc": False, "timezone": "America/Lima"}),
        trusted=True,
    )  # fmt: skip
    profile.refresh_from_db()
    assert (profile.gpc, profile.timezone) == (True, "America/Lima")


def test_a_message_id_twice_in_one_batch_is_stored_once(site):
    first = segment_event(anonymousId="a1", event="Product Added")
    result = store(site, first, dict(first), segment_event(anonymousId="a1"))
    assert (result.received, result.stored, result.duplicates) == (3, 2, 1)
    assert Event.objects.filter(site_id=site.id).count() == 2
