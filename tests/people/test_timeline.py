"""The visitor timeline: one person's events, enrollments, decisions, emails, audience
changes, consent changes and merges, newest first, in pages of bounded cost; and the
profile search it is reached from."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.audiences import membership
from campaigns.models import Decision, Enrollment, Message
from campaigns.people.timeline import Cursor, timeline
from tests.engine.conftest import T0, envelope, identify, make_campaign, profile_of, track
from tests.factories import make_site
from tracking.storage import store_events

pytestmark = pytest.mark.django_db


def minutes(n: int):
    return T0 + timedelta(minutes=n)


def url(profile, before: str = "") -> str:
    return f"/admin/tracking/profile/{profile.pk}/timeline/" + (
        f"?before={before}" if before else ""
    )


@pytest.fixture
def site():
    return make_site()


@pytest.fixture
def person(site):
    """Ann views and adds a product, is enrolled, emailed (delivered, opened, clicked),
    retargeted at step 2 and removed from the audience when she orders."""
    campaign = make_campaign(site, steps=[{"delay_minutes": 60}, {"delay_minutes": 1440}])
    step1, step2 = campaign.steps.order_by("position")
    identify(site, email="ann@example.com", at=minutes(0))
    track(site, "Product Viewed", at=minutes(1), properties={"name": "Blue shirt"})
    track(site, "Product Added", at=minutes(2), properties={"price": 19.5, "currency": "EUR"})
    profile = profile_of(site)
    enrollment = Enrollment.objects.get(profile=profile)  # entered through the flush
    Decision.objects.create(
        site=site, campaign=campaign, step=step1, position=0, enrollment=enrollment,
        profile=profile, outcome="email", reason="emailed", decided_at=minutes(62),
    )  # fmt: skip
    Decision.objects.create(
        site=site, campaign=campaign, step=step2, position=1, enrollment=enrollment,
        profile=profile, outcome="retarget", reason="no_email_consent", decided_at=minutes(1442),
    )  # fmt: skip
    Message.objects.create(
        site=site, campaign=campaign, step=step1, position=0, enrollment=enrollment,
        profile=profile, to_email="ann@example.com", status="clicked", created_at=minutes(62),
        sent_at=minutes(63), delivered_at=minutes(64), opened_at=minutes(90),
        clicked_at=minutes(91),
    )  # fmt: skip
    Enrollment.objects.filter(pk=enrollment.pk).update(next_position=2)
    membership.add_members([(step2.audience_id, profile.id)], now=minutes(1442))
    membership.remove_profiles([profile.id], now=minutes(1500), reason="converted")
    track(site, "Order Completed", at=minutes(1500), properties={"revenue": 42, "currency": "EUR"})
    return profile


def titles(page) -> list[str]:
    return [e.title for e in page.entries]


def test_the_timeline_merges_every_source_newest_first_in_plain_words(person):
    assert titles(timeline(person)) == [
        # the order, then at the same instant what it caused: the exit and the removal
        "Removed from the audience “Cart abandoners”",
        "“Abandoned cart”, step 3: Exited",
        "Order Completed",
        "Added to the audience “Cart abandoners”",
        "“Abandoned cart”, step 2: Retargeted",
        "Email of “Abandoned cart”, step 1: clicked",
        "Email of “Abandoned cart”, step 1: opened",
        "Email of “Abandoned cart”, step 1: delivered",
        "Email of “Abandoned cart”, step 1: sent to ann@example.com",
        "Email of “Abandoned cart”, step 1: queued",
        "“Abandoned cart”, step 1: Emailed",
        "Entered the campaign “Abandoned cart”",
        "Product Added",
        "Product Viewed",
        "Identified",
    ]
    entries = {e.title: e for e in timeline(person).entries}
    assert entries["“Abandoned cart”, step 2: Retargeted"].detail == (
        "Withdrew consent to marketing email."
    )
    assert entries["“Abandoned cart”, step 3: Exited"].detail == "Reached the campaign's goal."
    assert entries["Removed from the audience “Cart abandoners”"].detail == "Converted."
    assert entries["Added to the audience “Cart abandoners”"].detail == (
        "A campaign step retargeted them."
    )
    assert entries["Entered the campaign “Abandoned cart”"].detail == (
        "Left the campaign: Reached the campaign's goal."
    )
    assert entries["Product Added"].detail == "€19.50"
    assert entries["Product Viewed"].detail == "Blue shirt"


def test_pages_cover_every_entry_once_even_at_the_same_instant(site, person):
    # Five more events at one instant, the same as the removal and the order.
    store_events([envelope(site, f"Tie {n}", at=minutes(1500)) for n in range(5)], now=T0)
    everything = titles(timeline(person, size=1000))
    seen, before = [], None
    while True:
        page = timeline(person, before=before, size=3)
        seen += titles(page)
        if page.older is None:
            break
        before = Cursor.parse(str(page.older))  # through the URL's text form
    assert seen == everything
    assert len(everything) == 20


def test_consent_changes_are_noted_on_the_event_that_carried_them(site):
    yes = {"analytics": True, "email": True, "advertising": True}
    track(site, "Product Viewed", at=minutes(0), context={"consent": yes})
    track(site, "Product Viewed", at=minutes(1), context={"consent": yes})
    track(site, "Product Viewed", at=minutes(2), context={"consent": {**yes, "advertising": False}})
    notes = [e.notes for e in reversed(timeline(profile_of(site)).entries)]
    assert notes == [
        ["Consent given: agreed to advertising, analytics, email"],
        [],
        ["Consent changed: withdrew consent to advertising"],
    ]


def test_a_first_consent_after_undecided_events_is_consent_given_not_changed(site):
    # The snippet sends {} until the visitor decides.
    track(site, "Page Viewed", at=minutes(0), context={"consent": {}})
    track(site, "Product Viewed", at=minutes(1), context={"consent": {"analytics": True}})
    track(site, "Signed Up", at=minutes(2), context={"consent": {"analytics": True, "email": True}})
    track(site, "Left", at=minutes(3), context={"consent": {"analytics": True, "email": False}})
    notes = [e.notes for e in reversed(timeline(profile_of(site)).entries)]
    assert notes == [
        [],
        ["Consent given: agreed to analytics"],
        ["Consent given: agreed to email"],
        ["Consent changed: withdrew consent to email"],
    ]


def test_a_merged_profile_s_emails_and_audiences_show_on_the_survivor(site):
    campaign = make_campaign(site)
    track(site, "Product Viewed", at=minutes(0), anonymous_id="phone")
    phone = profile_of(site, "phone")
    membership.add_members([(campaign.steps.get().audience_id, phone.id)], now=minutes(1))
    identify(site, anonymous_id="laptop", user_id="u1", at=minutes(2))
    identify(site, anonymous_id="phone", user_id="u1", at=minutes(3))
    person = profile_of(site, "laptop")
    assert profile_of(site, "phone") == person
    page = titles(timeline(person))
    assert "Added to the audience “Cart abandoners”" in page
    assert "Recognised as the same person as another profile" in page
    assert page[-1] == "Product Viewed"  # the phone's event, re-pointed by the merge


def test_the_page_costs_the_same_queries_for_a_heavy_visitor(site, admin_client):
    light = profile_of(site, "anon-1") if track(site, "Product Viewed", at=minutes(0)) else None
    campaign = make_campaign(site)
    store_events(
        [envelope(site, "Product Viewed", anonymous_id="heavy", at=minutes(n)) for n in range(400)],
        now=T0,
    )
    heavy = profile_of(site, "heavy")
    Enrollment.objects.bulk_create(
        Enrollment(site=site, campaign=campaign, profile=heavy, enrolled_at=minutes(n),
                   last_activity_at=minutes(n), status="completed")
        for n in range(80)
    )  # fmt: skip
    admin_client.get(url(light))  # warm the session and permission caches
    counts = []
    for profile in (light, heavy):
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url(profile))
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
    with CaptureQueriesContext(connection) as queries:
        page = timeline(heavy)
    assert len(queries) == 7
    assert len(page.entries) == 50 and page.older is not None


def test_a_marketer_reads_the_timeline_without_secret_keys(client, django_user_model, person):
    user = django_user_model.objects.create_user("mia", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    response = client.get(url(person))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Email of “Abandoned cart”, step 1: clicked" in html
    assert person.site.secret_key not in html and person.site.write_key not in html
    assert "<script" not in html.split('id="content-main"')[1]
    assert "campaigns/timeline.css" in html
    # The entries link to what the marketer may open.
    assert "/admin/campaigns/enrollment/" in html and "/admin/campaigns/message/" in html


def test_staff_without_profile_permission_cannot_read_it(client, django_user_model, person):
    client.force_login(django_user_model.objects.create_user("sam", is_staff=True))
    assert client.get(url(person)).status_code == 403


def test_a_malformed_cursor_is_a_400_naming_the_parameter(admin_client, person):
    response = admin_client.get(url(person, "yesterday"))
    assert response.status_code == 400
    assert b"before" in response.content


def test_the_older_link_leads_to_the_next_page(admin_client, site):
    store_events([envelope(site, f"Event {n}", at=minutes(n)) for n in range(60)], now=T0)
    profile = profile_of(site)
    first = admin_client.get(url(profile)).content.decode()
    assert "Event 59" in first and "Event 9<" not in first
    older = first.split('href="?before=')[1].split('"')[0]
    second = admin_client.get(url(profile) + "?before=" + older).content.decode()
    assert "Event 9<" in second and "Event 10<" not in second and "Event 0<" in second
    assert "Older" not in second.split("paginator")[1]


def test_the_change_page_and_the_list_link_to_the_timeline(admin_client, person):
    assert (
        url(person)
        in admin_client.get(f"/admin/tracking/profile/{person.pk}/change/").content.decode()
    )
    assert url(person) in admin_client.get("/admin/tracking/profile/").content.decode()


@pytest.mark.parametrize("term", ["ANN@example.com", "anon-1", "u7", " ann@example.com "])
def test_search_finds_a_person_by_email_anonymous_id_or_user_id(admin_client, site, term):
    identify(site, email="Ann@Example.com", user_id="u7", at=minutes(0))
    identify(site, email="bob@example.com", anonymous_id="anon-2", at=minutes(0))
    html = admin_client.get("/admin/tracking/profile/", {"q": term}).content.decode()
    assert "Ann@Example.com" in html and "bob@example.com" not in html


def test_search_matches_whole_identifiers_not_substrings(admin_client, site):
    identify(site, email="ann@example.com", at=minutes(0))
    html = admin_client.get("/admin/tracking/profile/", {"q": "example.com"}).content.decode()
    assert "ann@example.com" not in html
