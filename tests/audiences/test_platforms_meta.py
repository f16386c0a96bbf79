"""Meta: joins and leaves as Conversions API events, customer lists add and remove."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.audiences import membership
from campaigns.audiences.membership import hash_email
from campaigns.audiences.platforms import outbox
from campaigns.models import Audience, PlatformBatch, PlatformDestination, PlatformMember
from tests.audiences.conftest import META_TOKEN, deliver, give_browser, make_person
from tests.audiences.platform_standins import MetaStandIn
from tests.factories import make_site

pytestmark = pytest.mark.django_db

# An hour ago: the tests move the clock forward, and Meta refuses events from the future.
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
FBP = "fb.1.1764000000000.1234567890"
FBC = "fb.1.1764000000000.IwAR2F4-dbP0l7Mn1IawQQ"


@pytest.fixture
def meta(settings):
    stand_in = MetaStandIn(token=META_TOKEN)
    settings.META_GRAPH_URL = stand_in.url
    yield stand_in
    stand_in.close()


@pytest.fixture
def audience():
    return Audience.objects.create(site=make_site(), name="Cart abandoners",
                                   include_hashed_emails=True)  # fmt: skip


def capi(audience, **fields) -> PlatformDestination:
    destination = PlatformDestination(audience=audience, name="Meta pixel",
                                      kind="meta_capi", pixel_id="1234567890", **fields)  # fmt: skip
    destination.credential = META_TOKEN
    destination.full_clean()
    destination.save()
    return destination


def custom_audience(audience) -> PlatformDestination:
    destination = PlatformDestination(audience=audience, name="Meta list",
                                      kind="meta_audience", custom_audience_id="2345678901")  # fmt: skip
    destination.credential = META_TOKEN
    destination.full_clean()
    destination.save()
    return destination


def test_a_join_reaches_the_pixel_as_one_event_with_the_browsers_fbp_fbc_ip_and_user_agent(
    meta, audience
):
    destination = capi(audience)
    anonymous = make_person(audience.site)
    give_browser(anonymous, fbp=FBP, fbc=FBC, ip="198.51.100.4", ua="Mozilla/5.0 (X11)")
    membership.add_members([(audience.id, anonymous.id)], now=NOW)
    deliver(NOW)

    assert meta.violations == []
    (event,) = meta.events["1234567890"]
    assert event["event_name"] == "reengage_join_cart_abandoners"
    assert event["action_source"] == "website"
    assert event["event_source_url"] == "https://shop.test/"
    assert event["event_time"] == int(NOW.timestamp())
    assert event["user_data"] == {"fbp": FBP, "fbc": FBC, "client_ip_address": "198.51.100.4",
                                  "client_user_agent": "Mozilla/5.0 (X11)"}  # fmt: skip
    change_id = audience.changes.get().id
    assert event["event_id"] == f"reengage-{destination.id}-{change_id}"


def test_hashed_email_and_external_id_go_only_with_people_who_allow_them(meta, audience):
    capi(audience)
    allowed = make_person(audience.site, email=" Ana@Example.com ")
    refused = make_person(audience.site, email="bo@example.com", advertising=False)
    for person, fbp in ((allowed, FBP), (refused, "fb.1.1764000000000.99")):
        give_browser(person, fbp=fbp)
    membership.add_members([(audience.id, allowed.id), (audience.id, refused.id)], now=NOW)
    deliver(NOW)

    assert meta.violations == []
    by_fbp = {e["user_data"]["fbp"]: e["user_data"] for e in meta.events["1234567890"]}
    assert by_fbp[FBP]["em"] == [hash_email("ana@example.com")]
    assert len(by_fbp[FBP]["external_id"][0]) == 64
    assert "em" not in by_fbp["fb.1.1764000000000.99"]
    assert "external_id" not in by_fbp["fb.1.1764000000000.99"]


def test_a_member_with_nothing_meta_matches_on_is_not_sent(meta, audience):
    capi(audience)
    person = make_person(audience.site)  # no browser ids, no email
    membership.add_members([(audience.id, person.id)], now=NOW)
    deliver(NOW)
    assert meta.events == {}
    assert PlatformBatch.objects.get().skipped == 1


def test_a_leave_follows_as_the_second_event_to_the_same_browser_and_is_then_forgotten(
    meta, audience
):
    destination = capi(audience)
    person = make_person(audience.site)
    give_browser(person, fbp=FBP)
    membership.add_members([(audience.id, person.id)], now=NOW)
    deliver(NOW)
    assert PlatformMember.objects.filter(destination=destination).count() == 1

    membership.leave_on_conversion([person.id], now=NOW + timedelta(minutes=5))
    deliver(NOW + timedelta(minutes=5))

    names = [(e["event_name"], e["user_data"]["fbp"]) for e in meta.events["1234567890"]]
    assert names == [("reengage_join_cart_abandoners", FBP),
                     ("reengage_leave_cart_abandoners", FBP)]  # fmt: skip
    assert meta.events["1234567890"][1]["custom_data"]["reengage_action"] == "leave"
    assert not PlatformMember.objects.filter(destination=destination).exists()


def test_an_erased_persons_leave_goes_to_the_ids_sent_on_join(meta, audience):
    from campaigns.people import forget

    capi(audience)
    person = make_person(audience.site, email="erase@example.com")
    give_browser(person, fbp=FBP, fbc=FBC)
    membership.add_members([(audience.id, person.id)], now=NOW)
    deliver(NOW)

    forget(audience.site, email="erase@example.com", now=NOW + timedelta(minutes=1))
    deliver(NOW + timedelta(minutes=1))

    assert meta.violations == []
    join, leave = meta.events["1234567890"]
    assert leave["event_name"] == "reengage_leave_cart_abandoners"
    assert leave["user_data"]["fbp"] == FBP and leave["user_data"]["fbc"] == FBC
    assert leave["user_data"]["em"] == join["user_data"]["em"]
    assert not PlatformMember.objects.exists()


def test_a_join_already_followed_by_its_leave_is_sent_as_neither(meta, audience):
    capi(audience)
    person = make_person(audience.site)
    give_browser(person, fbp=FBP)
    membership.add_members([(audience.id, person.id)], now=NOW)
    membership.leave_on_conversion([person.id], now=NOW)
    deliver(NOW)
    assert meta.events == {}
    assert PlatformBatch.objects.get().skipped == 2


def test_joins_go_in_requests_of_at_most_the_batch_size(meta, audience, settings):
    settings.META_CAPI_BATCH_SIZE = 3
    capi(audience)
    people = [make_person(audience.site) for _ in range(7)]
    for n, person in enumerate(people):
        give_browser(person, fbp=f"fb.1.1764000000000.{n}")
    membership.add_members([(audience.id, p.id) for p in people], now=NOW)
    deliver(NOW, rounds=3)
    sizes = [len(b.change_ids) for b in PlatformBatch.objects.order_by("id")]
    assert sizes == [3, 3, 1]
    assert len(meta.events["1234567890"]) == 7
    assert len([r for r in meta.requests if not r["fault"]]) == 3


def test_a_customer_list_gets_hashed_emails_and_loses_them_on_consent_withdrawal(meta, audience):
    custom_audience(audience)
    ana = make_person(audience.site, email="Ana@Example.com", phone="+1 650 555 1212")
    bo = make_person(audience.site, email="bo@example.com")
    anonymous = make_person(audience.site)
    membership.add_members([(audience.id, p.id) for p in (ana, bo, anonymous)], now=NOW)
    deliver(NOW)
    ana_row = (hash_email("ana@example.com"), membership.hash_phone("+16505551212")[1])
    assert meta.audiences["2345678901"] == {ana_row, (hash_email("bo@example.com"), "")}

    # Ana withdraws consent: the remove change takes her off the list (a DELETE).
    ana.consent = {"advertising": False}
    ana.save()
    membership.remove_members(where=__import__("psycopg2").sql.SQL("m.profile_id = %(p)s"),
                              params={"p": ana.id}, now=NOW, reason="consent_withdrawn")  # fmt: skip
    deliver(NOW + timedelta(minutes=1))

    assert meta.violations == []
    assert meta.audiences["2345678901"] == {(hash_email("bo@example.com"), "")}
    assert [s["method"] for s in meta.sessions] == ["POST", "DELETE"]
    assert meta.sessions[0]["last_batch_flag"] is True and meta.sessions[0]["batch_seq"] == 1


def test_an_erased_person_is_removed_from_the_customer_list(meta, audience):
    from campaigns.people import forget

    custom_audience(audience)
    person = make_person(audience.site, email="gone@example.com")
    membership.add_members([(audience.id, person.id)], now=NOW)
    deliver(NOW)
    assert meta.audiences["2345678901"] == {(hash_email("gone@example.com"), "")}
    forget(audience.site, email="gone@example.com", now=NOW)
    deliver(NOW + timedelta(minutes=1))
    assert meta.audiences["2345678901"] == set()


def test_customer_list_batches_of_one_pass_share_an_upload_session(meta, audience, settings):
    settings.META_AUDIENCE_BATCH_SIZE = 2
    custom_audience(audience)
    people = [make_person(audience.site, email=f"p{i}@example.com") for i in range(5)]
    membership.add_members([(audience.id, p.id) for p in people], now=NOW)
    deliver(NOW, rounds=3)
    sessions = [(s["session_id"], s["batch_seq"], s["last_batch_flag"], s["rows"])
                for s in meta.sessions]  # fmt: skip
    first = sessions[0][0]
    assert sessions == [(first, 1, False, 2), (first, 2, False, 2), (first, 3, True, 1)]
    assert len(meta.audiences["2345678901"]) == 5


def test_a_customer_list_needs_an_audience_that_includes_hashed_emails():
    from django.core.exceptions import ValidationError

    plain = Audience.objects.create(site=make_site(), name="Anonymous only")
    destination = PlatformDestination(audience=plain, name="list", kind="meta_audience",
                                      custom_audience_id="1")  # fmt: skip
    with pytest.raises(ValidationError) as error:
        destination.full_clean()
    assert "kind" in error.value.message_dict


def test_a_pixel_id_that_is_not_digits_is_refused():
    from django.core.exceptions import ValidationError

    audience = Audience.objects.create(site=make_site(), name="A")
    destination = PlatformDestination(audience=audience, name="p", kind="meta_capi",
                                      pixel_id="123/../evil")  # fmt: skip
    with pytest.raises(ValidationError) as error:
        destination.full_clean()
    assert "pixel_id" in error.value.message_dict


def test_send_test_posts_a_test_event_with_the_test_event_code(meta, audience):
    destination = capi(audience, test_event_code="TEST123")
    outcome = outbox.send_test(destination, now=NOW)
    assert outcome.ok, outcome.error
    assert meta.violations == []
    (event,) = meta.events["1234567890"]
    assert event["event_name"] == "reengage_test"


def test_pixel_events_need_a_site_domain_for_their_event_source_url():
    from django.core.exceptions import ValidationError

    audience = Audience.objects.create(site=make_site(domains=[]), name="No domain")
    destination = PlatformDestination(audience=audience, name="p", kind="meta_capi",
                                      pixel_id="1")  # fmt: skip
    with pytest.raises(ValidationError) as error:
        destination.full_clean()
    assert "has no domain" in str(error.value.message_dict["kind"])
