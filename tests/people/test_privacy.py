"""Erasure and access requests: forget command, API, and what remains afterwards."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from campaigns.audiences import membership
from campaigns.models import Audience, AudienceChange, AudienceMember, Message, Suppression
from campaigns.models.email import email_hash
from campaigns.people.privacy import forget
from tests.factories import make_site, segment_event
from tracking.ingest import SiteKey, parse_batch
from tracking.models import AdIdentifiers, Event, Profile, Visitor
from tracking.storage import store_events

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


@pytest.fixture
def site():
    return make_site()


def store(site, *calls):
    key = SiteKey(site.id, True, (), True, 395, (site.secret_key,), 10**6)
    events, _ = parse_batch({"batch": list(calls)}, key=key, received_at=datetime.now(UTC),
                            client_ip="192.0.2.1", single_type=None)  # fmt: skip
    store_events(events, now=datetime.now(UTC))


@pytest.fixture
def ann(site):
    store(
        site,
        segment_event(anonymousId="ann-laptop", event="Product Added"),
        segment_event("identify", anonymousId="ann-laptop", userId="ann",
                      traits={"email": "Ann@Example.com", "name": "Ann"},
                      context={"consent": {"advertising": True}}),
        segment_event("identify", anonymousId="ann-phone", userId="ann"),
    )  # fmt: skip
    profile = Profile.objects.get(site=site, user_id="ann")
    audience = Audience.objects.create(site=site, name="Cart", include_hashed_emails=True)
    membership.add_members([(audience.id, profile.id)], now=NOW)
    Message.objects.create(site=site, profile=profile, to_email="Ann@Example.com", status="sent")
    return profile


def test_forget_by_email_erases_the_person_and_keeps_a_hashed_suppression(site, ann):
    other = segment_event(anonymousId="bob", event="Product Viewed")
    store(site, other)
    report = forget(site, email="ann@example.com", now=NOW)
    assert report.profiles == 1
    assert report.events == 3
    assert report.audience_removals == 1
    assert report.messages_anonymised == 1
    assert not Profile.objects.filter(id=ann.id).exists()
    assert not Visitor.objects.filter(anonymous_id__startswith="ann-").exists()
    assert not Event.objects.filter(anonymous_id__startswith="ann-").exists()
    assert Event.objects.filter(anonymous_id="bob").count() == 1  # others untouched
    suppression = Suppression.objects.get(site=site, email_hash=email_hash("ann@example.com"))
    assert (suppression.email, suppression.reason) == ("", "erased")
    assert Message.objects.get(site=site).to_email == ""
    removal = AudienceChange.objects.get(action="remove")
    assert removal.reason == "erased"
    assert AudienceMember.objects.get().email_sha256 == ""


def test_forget_by_anonymous_id_finds_the_whole_person(site, ann):
    report = forget(site, anonymous_id="ann-phone", now=NOW)
    assert report.profiles == 1
    assert not Visitor.objects.filter(anonymous_id="ann-laptop").exists()


def test_forget_is_idempotent_and_says_so(site, ann):
    forget(site, email="ann@example.com", now=NOW)
    again = forget(site, email="ann@example.com", now=NOW)
    assert (again.profiles, again.events, again.suppressions_added) == (0, 0, 0)
    assert Suppression.objects.filter(site=site).count() == 1


def test_the_command_reports_and_refuses_an_ambiguous_site(site, ann):
    out = StringIO()
    call_command("forget", "--email", "ann@example.com", "--site", str(site.id), "--json",
                 stdout=out)  # fmt: skip
    assert json.loads(out.getvalue())["profiles"] == 1
    make_site(name=site.name)
    with pytest.raises(CommandError, match="matches 2 sites"):
        call_command("forget", "--email", "x@example.com", "--site", site.name)


def test_the_export_holds_profile_events_messages_and_audiences(site, ann):
    out = StringIO()
    call_command("export_person", "--anonymous-id", "ann-laptop", "--site", site.write_key,
                 stdout=out)  # fmt: skip
    data = json.loads(out.getvalue())
    person = data["people"][0]
    assert person["profile"]["email"] == "Ann@Example.com"
    assert sorted(person["anonymousIds"]) == ["ann-laptop", "ann-phone"]
    assert len(person["events"]) == 3
    assert person["messages"][0]["to_email"] == "Ann@Example.com"
    assert person["audiences"][0]["audience__name"] == "Cart"


def auth(key):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_the_api_exports_and_erases_with_the_secret_key_only(client, site, ann):
    url = "/api/v1/privacy/person?email=ann@example.com"
    assert client.get(url, **auth(site.write_key)).status_code == 403
    exported = client.get(url, **auth(site.secret_key))
    assert exported.status_code == 200
    assert exported.json()["people"][0]["profile"]["userId"] == "ann"
    erased = client.delete(url, **auth(site.secret_key))
    assert erased.status_code == 200
    assert erased.json()["erased"]["profiles"] == 1
    assert client.get(url, **auth(site.secret_key)).json()["people"] == []


@pytest.mark.parametrize(
    "query", ["", "?email=ann@example.com&anonymousId=x", "?email=not-an-email"]
)
def test_the_api_names_a_bad_request(client, site, query):
    response = client.delete(f"/api/v1/privacy/person{query}", **auth(site.secret_key))
    assert response.status_code == 400
    assert response.json()["field"] == "email"


def test_inactive_people_are_anonymised_and_active_ones_kept(site, ann):
    from datetime import timedelta

    from campaigns.people.privacy import anonymise_inactive_profiles

    store(site, segment_event(anonymousId="recent", event="Product Viewed"))
    Profile.objects.filter(id=ann.id).update(last_seen_at=NOW - timedelta(days=400))
    count = anonymise_inactive_profiles(now=NOW, inactive_days=395)
    assert count == 1
    ann.refresh_from_db()
    assert (ann.email, ann.user_id, ann.traits) == (None, None, {})
    assert not Visitor.objects.filter(profile=ann).exists()
    assert set(Event.objects.filter(profile_id=ann.id).values_list("anonymous_id", flat=True)) == {
        ""
    }
    assert AudienceMember.objects.get(profile=ann).removal_reason == "expired"
    assert Visitor.objects.filter(anonymous_id="recent").exists()
    assert anonymise_inactive_profiles(now=NOW, inactive_days=395) == 0


def test_old_dev_mailbox_copies_are_pruned(site):
    from datetime import timedelta

    from campaigns.models import DevMail
    from campaigns.people.privacy import prune_message_bodies

    old = DevMail.objects.create(esp_message_id="a", from_email="x", to="y", subject="old",
                                 received_at=NOW - timedelta(days=40))  # fmt: skip
    new = DevMail.objects.create(esp_message_id="b", from_email="x", to="y", subject="new",
                                 received_at=NOW)  # fmt: skip
    assert prune_message_bodies(now=NOW, days=30) == 1
    assert list(DevMail.objects.values_list("id", flat=True)) == [new.id]
    assert old.id != new.id


def test_the_admin_erases_and_exports_the_selected_people(admin_client, site, ann):
    url = "/admin/tracking/profile/"
    exported = admin_client.post(url, {"action": "export_people", "_selected_action": [ann.id]})
    assert exported.status_code == 200
    assert json.loads(exported.content)[0]["people"][0]["profile"]["userId"] == "ann"
    erased = admin_client.post(url, {"action": "erase_people", "_selected_action": [ann.id]},
                               follow=True)  # fmt: skip
    assert "Erased 1 people" in erased.content.decode()
    assert not Profile.objects.filter(id=ann.id).exists()
    assert Suppression.objects.filter(site=site, reason="erased").exists()


# --- the ad platforms' ids (tracking.AdIdentifiers) -------------------------------------

FBP = "fb.1.1596403881668.1116446470"
GA_CLIENT_ID = "1197596843.1673515099"


def test_an_erased_persons_ad_identifiers_are_gone_and_others_stay(site, ann):
    store(
        site,
        segment_event(anonymousId="ann-phone", context={"adIds": {"fbp": FBP}}),
        segment_event(anonymousId="bob", context={"adIds": {"gaClientId": GA_CLIENT_ID}}),
    )
    assert AdIdentifiers.objects.filter(site=site).count() == 2
    forget(site, email="ann@example.com", now=NOW)
    assert list(AdIdentifiers.objects.filter(site=site).values_list("ga_client_id", flat=True)) == [
        GA_CLIENT_ID
    ]


def test_the_access_export_holds_the_persons_own_ad_identifiers(client, site, ann):
    store(site, segment_event(anonymousId="ann-laptop", context={"adIds": {"fbp": FBP}}))
    person = client.get(
        "/api/v1/privacy/person?email=ann@example.com", **auth(site.secret_key)
    ).json()["people"][0]
    [ids] = person["adIdentifiers"]
    assert (ids["visitor__anonymous_id"], ids["fbp"], ids["client_ip"]) == (
        "ann-laptop",
        FBP,
        "192.0.2.0",
    )


def test_anonymising_an_inactive_person_drops_their_ad_identifiers(site, ann):
    from campaigns.people.privacy import anonymise_inactive_profiles

    store(site, segment_event(anonymousId="ann-phone", context={"adIds": {"fbp": FBP}}))
    assert AdIdentifiers.objects.get(site=site).fbp == FBP
    Profile.objects.filter(id=ann.id).update(last_seen_at=NOW - timedelta(days=800))
    anonymise_inactive_profiles(now=NOW, inactive_days=730)
    assert not AdIdentifiers.objects.filter(site=site).exists()
