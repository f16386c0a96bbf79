"""The trust model (docs/security.md): a write-key call is a claim by one browser.

Each attack of issue 14 (items 1, 2 and two of 8) is made against the real ingest
view and the real flusher (Redis stream, PostgreSQL) and shown refused, and an
honest browser's events are still stored and still enroll it.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from campaigns.audiences import membership
from campaigns.engine.tick import tick
from campaigns.models import Attribution, Audience, Enrollment, Message, SitePolicy
from tests.engine.conftest import make_campaign
from tests.factories import make_site
from tracking import flush
from tracking.keys import clear_key_cache
from tracking.models import Event, Profile, Visitor

pytestmark = pytest.mark.django_db

VICTIM_EMAIL = "vic@example.com"
ATTACKER_EMAIL = "mal@evil.test"


@pytest.fixture(autouse=True)
def _fresh(redis_client):
    clear_key_cache()
    yield
    clear_key_cache()


@pytest.fixture
def site():
    site = make_site()
    # The tests run on the wall clock (ingest stamps events with it): no quiet hours.
    SitePolicy.objects.create(site=site, quiet_hours_enabled=False)
    return site


def send(client, key: str, call: str, body: dict, **extra):
    """POST one Segment call to /v1/<call> with `key` as the HTTP Basic user."""
    body = {"messageId": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(), **body}
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return client.post(f"/v1/{call}", json.dumps(body), content_type="application/json",
                       HTTP_AUTHORIZATION=auth, **extra)  # fmt: skip


def browser(client, site, call: str, body: dict):
    """A call with the public write key; it must be accepted (200), then it is flushed."""
    response = send(client, site.write_key, call, body)
    assert response.status_code == 200, response.content
    flush.flush_once()
    return response


def server(client, site, call: str, body: dict):
    response = send(client, site.secret_key, call, body)
    assert response.status_code == 200, response.content
    flush.flush_once()


def profile_of(site, anonymous_id: str) -> Profile:
    return (
        Visitor.objects.select_related("profile").get(site=site, anonymous_id=anonymous_id).profile
    )


@pytest.fixture
def victim(client, site) -> Profile:
    """A customer the shop's backend identified, signed in on their own browser with a proof."""
    server(
        client,
        site,
        "identify",
        {"userId": "victim", "traits": {"email": VICTIM_EMAIL, "first_name": "Vic"}},
    )
    browser(client, site, "identify", {
        "userId": "victim", "anonymousId": "vic-browser",
        "traits": {"email": VICTIM_EMAIL,
                   "user_hash": site.identity_proof("victim", VICTIM_EMAIL)}})  # fmt: skip
    person = Profile.objects.get(site=site, user_id="victim")
    assert profile_of(site, "vic-browser") == person
    assert (person.email, person.email_verified, person.user_id_proven) == (
        VICTIM_EMAIL,
        True,
        True,
    )
    return person


def unchanged(person: Profile) -> Profile:
    """The victim's profile, reread: still theirs in every field an email uses."""
    fresh = Profile.objects.get(pk=person.pk)
    assert (fresh.user_id, fresh.email, fresh.email_verified) == ("victim", VICTIM_EMAIL, True)
    assert fresh.traits == person.traits
    assert (fresh.consent, fresh.gpc) == (person.consent, person.gpc)
    assert fresh.merged_into_id is None
    return fresh


def claims_of(site, anonymous_id: str) -> list[dict]:
    """The stored events of a browser, with what they claimed and could not prove."""
    return [
        {"type": e.type, "profile": e.profile_id, "user_id": e.user_id,
         "unproven": e.context.get("unproven"), "trust": e.trust}
        for e in Event.objects.filter(site=site, anonymous_id=anonymous_id).order_by("timestamp")
    ]  # fmt: skip


def cart_email_at_one_hour(site) -> list[str]:
    """Run the engine an hour and a minute from now: the addresses it emails."""
    tick(now=datetime.now(UTC) + timedelta(minutes=61))
    return sorted(Message.objects.filter(site=site).values_list("to_email", flat=True))


# --- item 1: identity takeover ------------------------------------------------------------


def test_a_user_hash_replayed_with_another_customers_user_id_is_refused(client, site, victim):
    # The attacker is a customer too: the shop gave their browser a proof for their own id.
    mine = site.identity_proof("mallory", ATTACKER_EMAIL)
    response = send(client, site.write_key, "identify", {
        "userId": "victim", "anonymousId": "mal-browser",
        "traits": {"email": ATTACKER_EMAIL, "user_hash": mine}})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["field"] == "body.traits.user_hash"
    assert "userId" in response.json()["error"]
    flush.flush_once()
    unchanged(victim)


def test_an_old_email_only_user_hash_with_another_customers_user_id_takes_nothing(
    client, site, victim
):
    campaign = make_campaign(site)
    browser(client, site, "track", {"anonymousId": "vic-browser", "event": "Product Added",
                                    "properties": {"products": [{"name": "Boots"}]}})  # fmt: skip
    # The attack of issue 14: the attacker's own (valid, old-style) hash, the victim's userId.
    browser(client, site, "identify", {
        "userId": "victim", "anonymousId": "mal-browser",
        "traits": {"email": ATTACKER_EMAIL, "user_hash": site.user_hash(ATTACKER_EMAIL)}})  # fmt: skip

    unchanged(victim)
    attacker = profile_of(site, "mal-browser")
    assert attacker != victim
    # The call is kept, as its own browser's: the attacker's address, verified, on their own.
    assert (attacker.user_id, attacker.email, attacker.email_verified) == (
        None, ATTACKER_EMAIL, True)  # fmt: skip
    assert claims_of(site, "mal-browser") == [{"type": "identify", "profile": attacker.id,
        "user_id": "", "unproven": {"userId": "victim"}, "trust": 0}]  # fmt: skip
    # The victim's cart email goes to the victim.
    assert cart_email_at_one_hour(site) == [VICTIM_EMAIL]
    assert Enrollment.objects.get(campaign=campaign).profile_id == victim.id


def test_an_email_only_hash_never_replaces_a_verified_address_of_the_browsers_person(
    client, site, victim
):
    # Even on the victim's own browser (a shared computer), an old-style hash for another
    # address does not replace the proven one; a proof bound to the identity does.
    browser(client, site, "identify", {"anonymousId": "vic-browser", "traits": {
        "email": ATTACKER_EMAIL, "user_hash": site.user_hash(ATTACKER_EMAIL)}})  # fmt: skip
    victim.refresh_from_db()
    assert (victim.email, victim.email_verified) == (VICTIM_EMAIL, True)
    browser(client, site, "identify", {"userId": "victim", "anonymousId": "vic-browser",
        "traits": {"email": "vic@new.example",
                   "user_hash": site.identity_proof("victim", "vic@new.example")}})  # fmt: skip
    victim.refresh_from_db()
    assert (victim.email, victim.email_verified) == ("vic@new.example", True)


# --- item 2: writing into a known person with only the write key ---------------------------


def test_unproven_traits_consent_and_gpc_naming_a_known_user_stay_on_their_browser(
    client, site, victim
):
    browser(client, site, "identify", {
        "userId": "victim", "anonymousId": "mal-browser",
        "traits": {"first_name": "your account is LOCKED"},
        "context": {"consent": {"email": False, "advertising": True}, "gpc": True}})  # fmt: skip
    # Without an anonymous id too: nothing to attach it to but itself, and it is still kept.
    browser(
        client,
        site,
        "identify",
        {"userId": "victim", "traits": {"first_name": "your account is LOCKED"}},
    )

    victim = unchanged(victim)
    assert victim.traits == {"email": VICTIM_EMAIL, "first_name": "Vic"}
    attacker = profile_of(site, "mal-browser")
    assert attacker.traits == {"first_name": "your account is LOCKED"}
    assert (attacker.consent, attacker.gpc) == ({"email": False, "advertising": True}, True)
    orphan = Event.objects.get(site=site, anonymous_id="", type="identify", trust=0)
    assert (orphan.profile_id, orphan.user_id, orphan.context["unproven"]) == (
        None, "", {"userId": "victim"})  # fmt: skip


def test_an_unproven_cart_naming_a_known_user_is_the_browsers_own_and_enrolls_it(
    client, site, victim
):
    campaign = make_campaign(site)
    phishing = {"products": [{"name": "Verify your account", "url": "https://evil.test/login"}]}
    browser(client, site, "track", {"userId": "victim", "anonymousId": "mal-browser",
                                    "event": "Product Added", "properties": phishing})  # fmt: skip

    # The victim is not enrolled on the attacker's cart; the attacker's browser is (its own
    # events are stored and enroll it as any browser's: it has no verified email to mail).
    attacker = profile_of(site, "mal-browser")
    enrollment = Enrollment.objects.get(campaign=campaign)
    assert (enrollment.profile_id, enrollment.trigger_properties) == (attacker.id, phishing)
    assert not Enrollment.objects.filter(profile=victim).exists()
    assert cart_email_at_one_hour(site) == []
    unchanged(victim)


def test_an_unproven_alias_cannot_move_a_known_users_email_to_another_id(client, site, victim):
    browser(client, site, "alias", {"previousId": "victim", "userId": "mallory",
                                    "anonymousId": "mal-browser"})  # fmt: skip
    # A proof for the attacker's own id does not cover the victim's previousId.
    browser(client, site, "alias", {"previousId": "victim", "userId": "mallory",
        "anonymousId": "mal-browser",
        "context": {"user_hash": site.identity_proof("mallory")}})  # fmt: skip

    unchanged(victim)
    assert not Profile.objects.filter(site=site, user_id="mallory").exists()
    assert [c["unproven"] for c in claims_of(site, "mal-browser")] == [
        {"userId": "mallory", "previousId": "victim"}] * 2  # fmt: skip


def test_unproven_goal_events_naming_a_known_user_do_not_end_their_campaign(client, site, victim):
    campaign = make_campaign(site)
    browser(client, site, "track", {"anonymousId": "vic-browser", "event": "Product Added"})
    browser(client, site, "track", {"userId": "victim", "anonymousId": "mal-browser",
                                    "event": "Order Completed"})  # fmt: skip
    browser(client, site, "track", {"userId": "victim", "event": "Order Completed"})

    enrollment = Enrollment.objects.get(campaign=campaign, profile=victim)
    assert enrollment.status == Enrollment.Status.ACTIVE
    assert cart_email_at_one_hour(site) == [VICTIM_EMAIL]


def test_the_shops_own_order_still_ends_the_campaign(client, site, victim):
    campaign = make_campaign(site)
    browser(client, site, "track", {"anonymousId": "vic-browser", "event": "Product Added"})
    server(client, site, "track", {"userId": "victim", "event": "Order Completed"})
    enrollment = Enrollment.objects.get(campaign=campaign, profile=victim)
    assert (enrollment.status, enrollment.exit_reason) == ("exited", "converted")


# --- a userId first claimed by a stranger ------------------------------------------------


def test_a_user_id_a_stranger_claimed_first_is_taken_back_by_the_shops_identify(client, site):
    # Ids are often sequential: an attacker prepares the next customer's profile.
    campaign = make_campaign(site)
    browser(
        client,
        site,
        "identify",
        {
            "userId": "u-1001",
            "anonymousId": "mal-browser",
            "traits": {"first_name": "your account is LOCKED"},
        },
    )
    browser(client, site, "track", {"userId": "u-1001", "anonymousId": "mal-browser",
                                    "event": "Product Added"})  # fmt: skip
    claimed = Profile.objects.get(site=site, user_id="u-1001")
    assert claimed.user_id_proven is False

    # The customer signs up; the shop's backend identifies them with the secret key.
    server(client, site, "identify", {"userId": "u-1001", "traits": {"email": "new@example.com"}})

    person = Profile.objects.get(site=site, user_id="u-1001")
    assert person.id != claimed.id
    assert (person.email, person.email_verified, person.user_id_proven) == (
        "new@example.com", True, True)  # fmt: skip
    assert person.traits == {"email": "new@example.com"}
    assert not person.visitors.exists()
    claimed.refresh_from_db()
    assert (claimed.user_id, claimed.traits) == (None, {"first_name": "your account is LOCKED"})
    assert profile_of(site, "mal-browser") == claimed
    assert not Enrollment.objects.filter(campaign=campaign, profile=person).exists()
    assert cart_email_at_one_hour(site) == []


def test_a_shops_order_for_a_user_id_an_old_install_claimed_still_ends_its_campaign(client, site):
    # An old install: the browser's first sign-in claims the userId with the email-only
    # hash; the shop's server then sends the order by userId alone. The order cannot tell
    # that claim from a stranger's, so it leaves it be, and the customer is not emailed
    # about a cart they bought.
    campaign = make_campaign(site)
    legacy = {"email": "ann@example.com", "user_hash": site.user_hash("ann@example.com")}
    browser(client, site, "identify", {"userId": "ann", "anonymousId": "laptop", "traits": legacy})
    browser(client, site, "track", {"anonymousId": "laptop", "event": "Product Added"})
    server(client, site, "track", {"userId": "ann", "event": "Order Completed"})
    person = Profile.objects.get(site=site, user_id="ann")
    assert profile_of(site, "laptop") == person
    enrollment = Enrollment.objects.get(campaign=campaign)
    assert (enrollment.profile_id, enrollment.exit_reason) == (person.id, "converted")


def test_where_the_site_requires_the_proof_a_browser_cannot_claim_even_a_new_user_id(client, site):
    site.require_identity_proof = True
    site.save(update_fields=["require_identity_proof"])
    browser(client, site, "identify", {"userId": "u-1001", "anonymousId": "mal-browser"})
    assert not Profile.objects.filter(site=site, user_id="u-1001").exists()
    assert claims_of(site, "mal-browser")[0]["unproven"] == {"userId": "u-1001"}
    browser(client, site, "identify", {"userId": "u-1001", "anonymousId": "laptop",
        "traits": {"user_hash": site.identity_proof("u-1001")}})  # fmt: skip
    assert profile_of(site, "laptop").user_id == "u-1001"


# --- item 8: audience tags and browser revenue ----------------------------------------------


def test_a_browser_that_claimed_a_known_user_id_gets_none_of_their_audience_tags(
    client, site, victim
):
    audience = Audience.objects.create(site=site, name="Tagged", tag_type="image",
                                       tag_url="https://ads.example/p.gif")  # fmt: skip
    membership.add_members([(audience.id, victim.id)], now=datetime.now(UTC))
    browser(client, site, "identify", {"userId": "victim", "anonymousId": "mal-browser"})
    browser(client, site, "track", {"userId": "victim", "anonymousId": "mal-browser",
                                    "event": "Product Viewed"})  # fmt: skip

    def tags(anonymous_id):
        return client.get(f"/v1/audiences/{site.write_key}/{anonymous_id}").json()["tags"]

    assert tags("mal-browser") == []
    assert tags("vic-browser") == [
        {"audience": audience.id, "type": "image", "url": "https://ads.example/p.gif"}]  # fmt: skip


def test_a_browser_that_only_claimed_a_new_user_id_gets_its_tags_once_the_shop_confirms(
    client, site
):
    audience = Audience.objects.create(site=site, name="Tagged", tag_type="image",
                                       tag_url="https://ads.example/p.gif")  # fmt: skip
    legacy = {"email": "ann@example.com", "user_hash": site.user_hash("ann@example.com")}
    browser(client, site, "identify", {"userId": "ann", "anonymousId": "laptop", "traits": legacy})
    claimed = Profile.objects.get(site=site, user_id="ann")
    membership.add_members([(audience.id, claimed.id)], now=datetime.now(UTC))

    def tags():
        return client.get(f"/v1/audiences/{site.write_key}/laptop").json()["tags"]

    assert tags() == []
    server(client, site, "identify", {"userId": "ann", "traits": {"email": "ann@example.com"}})
    assert [t["audience"] for t in tags()] == [audience.id]


def test_a_browser_order_counts_as_a_conversion_but_its_revenue_only_if_the_site_allows(
    client, site, victim
):
    make_campaign(site)
    earlier = datetime.now(UTC) - timedelta(hours=3)
    browser(client, site, "track", {"anonymousId": "vic-browser", "event": "Product Added",
                                    "timestamp": earlier.isoformat()})  # fmt: skip
    tick(now=earlier + timedelta(minutes=61))
    message = Message.objects.get(profile=victim)
    Message.objects.filter(pk=message.pk).update(clicked_at=earlier + timedelta(hours=2))

    def order(key, order_id, revenue):
        body = {
            "anonymousId": "vic-browser",
            "event": "Order Completed",
            "properties": {"order_id": order_id, "revenue": revenue, "currency": "EUR"},
        }
        assert send(client, key, "track", body).status_code == 200
        flush.flush_once()
        return Attribution.objects.get(event_id=Event.objects.get(
            site=site, properties__order_id=order_id).id)  # fmt: skip

    assert order(site.write_key, "b-1", 10**9).revenue is None
    assert order(site.secret_key, "s-1", 42.5).revenue == Decimal("42.50")
    site.browser_order_revenue = True
    site.save(update_fields=["browser_order_revenue"])
    assert order(site.write_key, "b-2", 30).revenue == Decimal("30.00")


# --- honest browsers, old and new installs ------------------------------------------------


def test_an_honest_anonymous_browser_is_stored_and_enrolled(client, site):
    campaign = make_campaign(site)
    browser(client, site, "track", {"anonymousId": "shopper", "event": "Product Added"})
    assert Enrollment.objects.get(campaign=campaign).profile == profile_of(site, "shopper")
    assert claims_of(site, "shopper")[0]["unproven"] is None


def test_a_proven_browser_signs_in_on_two_devices_and_is_emailed(client, site):
    campaign = make_campaign(site)
    proof = site.identity_proof("ann", "Ann@Example.com")
    for device in ("laptop", "phone"):
        browser(client, site, "identify", {"userId": "ann", "anonymousId": device,
            "traits": {"email": "Ann@Example.com", "user_hash": proof}})  # fmt: skip
    # Later calls name the userId without a proof: the browser is the person's already.
    browser(client, site, "track", {"userId": "ann", "anonymousId": "phone",
                                    "event": "Product Added"})  # fmt: skip
    person = Profile.objects.get(site=site, user_id="ann")
    assert profile_of(site, "laptop") == profile_of(site, "phone") == person
    assert (person.email_verified, person.user_id_proven) == (True, True)
    assert Enrollment.objects.get(campaign=campaign).profile == person
    assert cart_email_at_one_hour(site) == ["Ann@Example.com"]


def test_an_old_style_user_hash_still_verifies_an_email_where_it_is_safe(client, site):
    campaign = make_campaign(site)
    # No userId: the browser's own address.
    browser(client, site, "identify", {"anonymousId": "b-0", "traits": {
        "email": "zoe@example.com", "user_hash": site.user_hash("zoe@example.com")}})  # fmt: skip
    assert profile_of(site, "b-0").email_verified is True
    # A new userId: the first sign-in of an old install.
    legacy = {"email": "Ann@Example.com", "user_hash": site.user_hash("Ann@Example.com")}
    browser(client, site, "identify", {"userId": "ann", "anonymousId": "laptop", "traits": legacy})
    person = Profile.objects.get(site=site, user_id="ann")
    assert (person.email_verified, person.user_id_proven) == (True, False)
    # The same person's second device: the hash is the one minted for their own address.
    browser(client, site, "identify", {"userId": "ann", "anonymousId": "phone",
                                       "traits": dict(legacy)})  # fmt: skip
    assert profile_of(site, "phone") == person
    # The shop's backend confirms the claim (same address), so nothing is split.
    server(client, site, "identify", {"userId": "ann", "traits": {"email": "ann@example.com"}})
    person.refresh_from_db()
    assert (person.user_id, person.user_id_proven) == ("ann", True)
    browser(client, site, "track", {"anonymousId": "phone", "event": "Product Added"})
    assert Enrollment.objects.get(campaign=campaign).profile == person
    assert cart_email_at_one_hour(site) == ["ann@example.com"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"userId": "u1", "traits": {"user_hash": "0" * 64}}, "body.traits.user_hash"),
        ({"anonymousId": "a", "context": {"user_hash": "f00"}}, "body.context.user_hash"),
        ({"userId": "u1", "context": {"user_hash": 42}}, "body.context.user_hash"),
    ],
    ids=["wrong proof", "proof of nothing", "not a string"],
)
def test_a_user_hash_that_proves_nothing_is_a_400_naming_it(client, site, body, field):
    response = send(client, site.write_key, "identify", body)
    assert (response.status_code, response.json()["field"]) == (400, field)


def test_a_proof_on_a_track_call_proves_its_user_id(client, site, victim):
    browser(client, site, "track", {"userId": "victim", "anonymousId": "vic-phone",
        "event": "Product Viewed", "context": {"user_hash": site.identity_proof("victim")}})  # fmt: skip
    assert profile_of(site, "vic-phone") == unchanged(victim)
    assert claims_of(site, "vic-phone")[0]["trust"] == 1


def test_the_documented_test_vector_is_the_proof_ingest_checks():
    from pathlib import Path

    from tracking.trust import identity_proof

    docs = (Path(__file__).parents[2] / "docs" / "snippet.md").read_text()
    assert f"`{identity_proof('sk_test', '42', 'Ada@Example.com')}`" in docs


def test_inside_one_batch_a_claim_racing_the_owners_first_sign_in_does_not_join_them(client, site):
    def call(type_, body):
        return {"messageId": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(),
                "type": type_, **body}  # fmt: skip

    calls = [
        call("identify", {"userId": "u-7", "anonymousId": "mal-browser",
             "traits": {"first_name": "your account is LOCKED"}}),
        call("identify", {"userId": "u-7", "anonymousId": "ann-laptop",
             "traits": {"email": "ann@example.com",
                        "user_hash": site.identity_proof("u-7", "ann@example.com")}}),
        call("identify", {"userId": "u-8", "anonymousId": "first"}),
        call("identify", {"userId": "u-8", "anonymousId": "second"}),
        # An old install's sign-in next to the shop's own identify of the same address.
        call("identify", {"userId": "u-9", "anonymousId": "old-laptop",
             "traits": {"email": "bo@example.com", "user_hash": site.user_hash("bo@example.com")}}),
    ]  # fmt: skip
    auth = "Basic " + base64.b64encode(f"{site.write_key}:".encode()).decode()
    response = client.post("/v1/batch", json.dumps({"batch": calls}),
                           content_type="application/json", HTTP_AUTHORIZATION=auth)  # fmt: skip
    assert response.status_code == 200
    assert (
        send(
            client,
            site.secret_key,
            "identify",
            {"userId": "u-9", "traits": {"email": "bo@example.com"}},
        ).status_code
        == 200
    )
    flush.flush_once()

    ann = Profile.objects.get(site=site, user_id="u-7")
    assert profile_of(site, "ann-laptop") == ann != profile_of(site, "mal-browser")
    assert "first_name" not in ann.traits
    assert profile_of(site, "first").user_id == "u-8"
    assert profile_of(site, "second").user_id is None
    assert profile_of(site, "old-laptop") == Profile.objects.get(site=site, user_id="u-9")
