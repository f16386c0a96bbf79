"""Google: Customer Match lists through the Data Manager API, and GA4 events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.audiences import membership
from campaigns.audiences.membership import hash_email
from campaigns.audiences.platforms import google, outbox
from campaigns.models import Audience, PlatformBatch, PlatformDestination
from tests.audiences.conftest import GA4_MEASUREMENT, GA4_SECRET, deliver, give_browser, make_person
from tests.audiences.platform_standins import GA4StandIn, GoogleStandIn, new_service_account
from tests.factories import make_site

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def service_account():
    return new_service_account()


@pytest.fixture
def google_api(settings, service_account):
    stand_in = GoogleStandIn(public_key=service_account[1])
    settings.GOOGLE_DATAMANAGER_URL = stand_in.url
    settings.GOOGLE_OAUTH_TOKEN_URL = stand_in.url + "/token"
    google._tokens.clear()
    yield stand_in
    stand_in.close()


@pytest.fixture
def ga4(settings):
    stand_in = GA4StandIn(measurement_id=GA4_MEASUREMENT, api_secret=GA4_SECRET)
    settings.GA4_MP_URL = stand_in.url
    yield stand_in
    stand_in.close()


@pytest.fixture
def audience():
    return Audience.objects.create(site=make_site(), name="Browsers", include_hashed_emails=True)


def customer_match(audience, account) -> PlatformDestination:
    destination = PlatformDestination(
        audience=audience, name="Google list", kind="google_audience",
        google_operating_account_id="1234567890", google_audience_id="555",
        google_login_account_id="9876543210", google_terms_accepted=True,
    )  # fmt: skip
    destination.credential = json.dumps(account)
    destination.full_clean()
    destination.save()
    return destination


def ga4_destination(audience) -> PlatformDestination:
    destination = PlatformDestination(audience=audience, name="GA4", kind="ga4",
                                      measurement_id=GA4_MEASUREMENT)  # fmt: skip
    destination.credential = GA4_SECRET
    destination.full_clean()
    destination.save()
    return destination


def test_hashed_emails_and_phones_join_the_customer_match_list_with_consent_granted(
    google_api, audience, service_account
):
    customer_match(audience, service_account[0])
    ana = make_person(audience.site, email="Ana.B@Example.com", phone="+44 20 7946 0958")
    membership.add_members([(audience.id, ana.id)], now=NOW)
    deliver(NOW)
    assert google_api.violations == []
    e164_hash = membership.hash_phone("+442079460958")[0]
    assert google_api.lists["555"] == {hash_email("ana.b@example.com"), e164_hash}
    assert google_api.tokens_issued == 1


def test_a_consent_withdrawn_person_is_removed_from_the_customer_match_list(
    google_api, audience, service_account
):
    from psycopg2 import sql

    customer_match(audience, service_account[0])
    ana = make_person(audience.site, email="ana@example.com")
    bo = make_person(audience.site, email="bo@example.com")
    membership.add_members([(audience.id, ana.id), (audience.id, bo.id)], now=NOW)
    deliver(NOW)
    membership.remove_members(where=sql.SQL("m.profile_id = %(p)s"), params={"p": bo.id},
                              now=NOW, reason="consent_withdrawn")  # fmt: skip
    deliver(NOW + timedelta(minutes=1))
    assert google_api.violations == []
    assert google_api.lists["555"] == {hash_email("ana@example.com")}
    assert [r["path"] for r in google_api.requests if r["path"] != "/token"] == [
        "/v1/audienceMembers:ingest", "/v1/audienceMembers:remove"]  # fmt: skip


def test_an_erased_person_is_removed_from_the_customer_match_list(
    google_api, audience, service_account
):
    from campaigns.people import forget

    customer_match(audience, service_account[0])
    person = make_person(audience.site, email="gone@example.com")
    membership.add_members([(audience.id, person.id)], now=NOW)
    deliver(NOW)
    forget(audience.site, email="gone@example.com", now=NOW)
    deliver(NOW + timedelta(minutes=1))
    assert google_api.lists["555"] == set()


def test_a_service_account_key_that_is_not_one_is_a_form_error_not_a_crash():
    with pytest.raises(ValueError, match="service_account"):
        google.parse_service_account('{"type": "authorized_user"}')
    with pytest.raises(ValueError, match="JSON"):
        google.parse_service_account("{nope")


def test_google_send_test_is_a_validate_only_upload(google_api, audience, service_account):
    destination = customer_match(audience, service_account[0])
    outcome = outbox.send_test(destination, now=NOW)
    assert outcome.ok, outcome.error
    assert google_api.violations == []


def test_ga4_gets_a_join_and_a_leave_event_keyed_by_the_browsers_ga4_client_id(ga4, audience):
    ga4_destination(audience)
    person = make_person(audience.site)
    give_browser(person, ga="1197596843.1673515460")
    other = make_person(audience.site)  # no GA4 cookie: nothing GA4 could match
    membership.add_members([(audience.id, person.id), (audience.id, other.id)], now=NOW)
    deliver(NOW)
    membership.leave_on_conversion([person.id], now=NOW)
    deliver(NOW + timedelta(minutes=1))

    assert ga4.violations == []
    assert [(c, e["name"]) for c, e in ga4.events] == [
        ("1197596843.1673515460", "reengage_join_browsers"),
        ("1197596843.1673515460", "reengage_leave_browsers"),
    ]
    assert PlatformBatch.objects.order_by("id").first().skipped == 1


def test_ga4_sends_one_request_per_browser_and_at_most_25_events_in_each(ga4, audience, settings):
    settings.GA4_BATCH_SIZE = 1000
    destination = ga4_destination(audience)
    people = [make_person(audience.site) for _ in range(3)]
    for n, person in enumerate(people):
        give_browser(person, ga=f"{n + 1}00.200")
    membership.add_members([(audience.id, p.id) for p in people], now=NOW)
    deliver(NOW)
    assert ga4.violations == []
    assert len(ga4.requests) == 3
    # 30 joins of one browser (30 audiences' worth, here faked with one) split 25 + 5.
    from campaigns.audiences.platforms.base import Ids, Item
    from campaigns.audiences.platforms.ga4 import GA4Events

    items = [Item(i, "add", i, NOW, Ids(ga_client_id="1.2")) for i in range(30)]
    requests = GA4Events().requests(destination, None, items, NOW)
    assert [len(r.payload["events"]) for r in requests] == [25, 5]


def test_the_api_secret_never_reaches_the_dev_inbox_or_the_stored_payload(audience):
    destination = PlatformDestination(audience=audience, name="GA4 dev", kind="ga4",
                                      measurement_id=GA4_MEASUREMENT)  # fmt: skip
    destination.save()
    person = make_person(audience.site)
    give_browser(person, ga="123.456")
    membership.add_members([(audience.id, person.id)], now=NOW)
    deliver(NOW)
    (entry,) = destination.inbox.all()
    assert "api_secret" not in entry.endpoint
    assert entry.payload["client_id"] == "123.456"


def test_a_refused_access_token_is_minted_again_on_the_retry(google_api, audience, service_account):
    destination = customer_match(audience, service_account[0])
    person = make_person(audience.site, email="again@example.com")
    membership.add_members([(audience.id, person.id)], now=NOW)
    google.access_token(destination.credential)  # minted and cached: the upload comes next
    google_api.fail_next(1, 401, body=GoogleStandIn.error(
        401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"))  # fmt: skip
    deliver(NOW)
    batch = PlatformBatch.objects.get()
    assert batch.status == "pending" and "UNAUTHENTICATED" in batch.last_error
    deliver(NOW + timedelta(minutes=5))
    assert PlatformBatch.objects.get().status == "delivered"
    assert google_api.tokens_issued == 2
    assert google_api.lists["555"] == {hash_email("again@example.com")}
