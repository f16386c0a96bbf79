"""The ad platforms' ids (context.adIds): validated at ingest, kept per browser by the flusher."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import make_site, segment_event
from tracking import ad_ids, flush
from tracking.ingest import SiteKey, parse_batch
from tracking.keys import clear_key_cache
from tracking.models import AdIdentifiers, DroppedCount, Event, Visitor
from tracking.storage import store_events

# Meta's own examples ("fbp and fbc parameters"), a Google-shaped gclid, a _ga's client id.
FBP = "fb.1.1596403881668.1116446470"
FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
FBC = f"fb.1.1554763741205.{FBCLID}"
GCLID = "Cj0KCQiA5rGuBhCnARIsAN11vgQ_w8Zx-3kL"
GA_CLIENT_ID = "1197596843.1673515099"
ALL = {"fbp": FBP, "fbc": FBC, "gclid": GCLID, "gbraid": "0AAAAADqAb1", "wbraid": "CjkKCQ-x_1",
       "gaClientId": GA_CLIENT_ID}  # fmt: skip
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 Safari/537"


# --- the formats ------------------------------------------------------------------------


def test_values_of_the_documented_forms_are_kept_as_sent():
    assert ad_ids.clean(ALL) == (ALL, 0)


def test_meta_parameter_builders_appendix_is_kept():
    values = {"fbp": FBP + ".Bg", "fbc": FBC + ".AQ"}
    assert ad_ids.clean(values) == (values, 0)


def test_a_whole_ga_cookie_is_cut_down_to_its_client_id():
    assert ad_ids.clean({"gaClientId": f"GA1.1.{GA_CLIENT_ID}"}) == (
        {"gaClientId": GA_CLIENT_ID},
        0,
    )


def test_empty_values_are_absent_not_invalid():
    assert ad_ids.clean({"fbp": "", "gclid": None}) == ({}, 0)
    assert ad_ids.clean(None) == ({}, 0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("fbp", "fb.1.1596403881.1116446470"),  # seconds, not milliseconds
        ("fbp", "fx.1.1596403881668.1116446470"),
        ("fbp", "fb.1.1596403881668.11164x6470"),
        ("fbp", "fb.1.1596403881668"),
        ("fbp", "fb.1.1596403881668.1116446470.toolongappendix"),
        ("fbc", f"fb.1.1554763741205.{FBCLID};path=/"),
        ("fbc", "fb.1.1554763741205."),
        ("fbc", FBCLID),  # a bare fbclid is not an fbc
        ("fbc", "fb.1.1554763741205." + "a" * 500),  # longer than the column
        ("gaClientId", "GA1.1.abc.def"),
        ("gaClientId", "1197596843"),
        ("gclid", "Cj0KCQiA.5rGu"),
        ("gclid", "Cj0 KCQiA"),
        ("gbraid", "a=b"),
        ("wbraid", "x" * 201),
        ("gclid", 12345),
        ("ttclid", "abc"),  # not one we know
    ],
)
def test_a_value_not_of_the_documented_form_is_dropped_and_counted(key, value):
    kept, dropped = ad_ids.clean({key: value, "fbp": FBP} if key != "fbp" else {key: value})
    assert key not in kept
    assert dropped == 1
    if key != "fbp":
        assert kept == {"fbp": FBP}


def test_ad_ids_that_are_not_an_object_are_dropped_and_counted():
    assert ad_ids.clean("fb.1.1596403881668.1116446470") == ({}, 1)


# --- ingest -----------------------------------------------------------------------------


def key_for(site, *, trusted=False):
    return SiteKey(site.id, trusted, ("shop.test",), True, 395, (site.secret_key,), 10**6,
                   consent_mode=site.consent_mode)  # fmt: skip


def envelopes(site, *calls, trusted=False, dropped=None, received_at=None):
    events, _ = parse_batch({"batch": list(calls)}, key=key_for(site, trusted=trusted),
                            received_at=received_at or datetime.now(UTC),
                            client_ip="192.0.2.77", single_type=None, dropped=dropped)  # fmt: skip
    return events


def with_ids(ids=None, **fields):
    context = {"userAgent": UA, "adIds": dict(ALL if ids is None else ids)}
    context.update(fields.pop("context", {}))
    return segment_event(context=context, **fields)


@pytest.mark.django_db
def test_an_invalid_id_is_dropped_from_the_event_with_nothing_else_lost():
    site = make_site()
    dropped = Counter()
    call = with_ids({"fbp": "junk", "gclid": GCLID}, event="Cart Viewed", properties={"n": 1})
    [event] = envelopes(site, call, dropped=dropped)
    assert event["context"]["adIds"] == {"gclid": GCLID}
    assert event["name"] == "Cart Viewed" and event["properties"] == {"n": 1}
    assert event["context"]["userAgent"] == UA
    assert dropped == {"ad_id_invalid": 1}


@pytest.mark.django_db
@pytest.mark.parametrize("context", [{"gpc": True}, {"consent": {"advertising": False}}])
def test_an_event_that_refuses_advertising_keeps_no_ad_ids(context):
    [event] = envelopes(make_site(), with_ids(context=context))
    assert "adIds" not in event["context"]


@pytest.mark.django_db
def test_the_ingest_api_accepts_the_event_and_counts_the_invalid_id(client, redis_client):
    clear_key_cache()
    site = make_site()
    call = with_ids({"fbp": "fb.1.1.not-a-number", "fbc": FBC})
    auth = base64.b64encode(f"{site.write_key}:".encode()).decode()
    response = client.post("/v1/batch", json.dumps({"batch": [call]}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Basic {auth}")  # fmt: skip
    assert response.status_code == 200
    flush.flush_once()
    flush.fold_dropped_counts()
    assert DroppedCount.objects.get(site=site, reason="ad_id_invalid").count == 1
    assert Event.objects.filter(site=site, message_id=call["messageId"]).exists()
    row = AdIdentifiers.objects.get(visitor__anonymous_id="anon-1")
    assert (row.fbp, row.fbc) == ("", FBC)


# --- storage ----------------------------------------------------------------------------


def store(site, *calls, trusted=False, received_at=None):
    at = received_at or datetime.now(UTC)
    return store_events(envelopes(site, *calls, trusted=trusted, received_at=at), now=at)


def ids_of(site, anonymous_id="anon-1") -> AdIdentifiers | None:
    return AdIdentifiers.objects.filter(site=site, visitor__anonymous_id=anonymous_id).first()


@pytest.mark.django_db
def test_the_flusher_keeps_each_browsers_ids_with_its_last_ip_and_user_agent():
    site = make_site()
    store(site, with_ids())
    row = ids_of(site)
    assert (row.fbp, row.fbc, row.gclid, row.gbraid, row.wbraid, row.ga_client_id) == (
        FBP, FBC, GCLID, ALL["gbraid"], ALL["wbraid"], GA_CLIENT_ID,
    )  # fmt: skip
    assert row.client_ip == "192.0.2.0"  # anonymised, as the site says
    assert row.user_agent == UA
    assert row.visitor == Visitor.objects.get(site=site, anonymous_id="anon-1")


@pytest.mark.django_db
def test_the_events_themselves_do_not_keep_the_ids():
    site = make_site()
    store(site, with_ids())
    assert "adIds" not in Event.objects.get(site=site).context


@pytest.mark.django_db
def test_the_newest_event_decides_and_a_missing_id_keeps_its_stored_value():
    site = make_site()
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    new_fbp = "fb.1.1700000000000.42"
    store(site, with_ids({"fbp": FBP, "gclid": GCLID}, timestamp=t0.isoformat()))
    # In one batch, the newest of the browser's events gives the ids.
    store(
        site,
        with_ids({"fbp": new_fbp}, timestamp=(t0 + timedelta(minutes=2)).isoformat()),
        with_ids({"fbp": FBP}, timestamp=(t0 + timedelta(minutes=1)).isoformat()),
    )
    row = ids_of(site)
    assert (row.fbp, row.gclid) == (new_fbp, GCLID)
    assert row.updated_at == t0 + timedelta(minutes=2)
    # A late event from an offline queue does not overwrite the newer values.
    store(site, with_ids({"fbp": FBP}, timestamp=(t0 - timedelta(minutes=5)).isoformat()))
    assert ids_of(site).fbp == new_fbp


@pytest.mark.django_db
def test_an_unchanged_browser_is_not_rewritten_until_its_row_is_five_minutes_old():
    site = make_site()
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    store(site, with_ids(timestamp=t0.isoformat()))
    store(site, with_ids(timestamp=(t0 + timedelta(minutes=1)).isoformat()))
    assert ids_of(site).updated_at == t0
    store(site, with_ids(timestamp=(t0 + timedelta(minutes=6)).isoformat()))
    assert ids_of(site).updated_at == t0 + timedelta(minutes=6)
    # A changed value is written at once.
    store(site, with_ids({"gclid": "new-click"}, timestamp=(t0 + timedelta(minutes=7)).isoformat()))
    assert (ids_of(site).gclid, ids_of(site).fbp) == ("new-click", FBP)


@pytest.mark.django_db
def test_a_server_side_call_may_send_the_visitors_ids_and_ip():
    site = make_site()
    call = with_ids({"fbc": FBC}, context={"ip": "203.0.113.9"})
    store(site, call, trusted=True)
    row = ids_of(site)
    assert (row.fbc, row.client_ip) == (FBC, "203.0.113.0")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("consent_mode", "context", "kept"),
    [
        ("none", {}, True),
        ("opt-out", {}, True),
        ("none", {"consent": {"advertising": False}}, False),
        ("none", {"gpc": True}, False),
        ("opt-in", {"consent": {"analytics": True}}, False),
        ("opt-in", {"consent": {"analytics": True, "advertising": True}}, True),
        ("opt-in", {"consent": {"analytics": True, "advertising": True}, "gpc": True}, False),
    ],
)
def test_ids_are_kept_only_where_the_person_allows_advertising(consent_mode, context, kept):
    site = make_site(consent_mode=consent_mode)
    store(site, with_ids(context=context))
    assert (ids_of(site) is not None) is kept


@pytest.mark.django_db
def test_consent_given_earlier_lets_a_later_event_without_consent_carry_ids():
    site = make_site(consent_mode="opt-in")
    store(site, segment_event(context={"consent": {"analytics": True, "advertising": True}}))
    store(site, with_ids())
    assert ids_of(site).fbp == FBP


@pytest.mark.django_db
@pytest.mark.parametrize("withdrawal", [{"consent": {"advertising": False}}, {"gpc": True}])
def test_withdrawing_consent_deletes_the_ids_of_every_browser_of_the_person(withdrawal):
    site = make_site()
    other = make_site(name="Other")
    laptop = with_ids(anonymousId="laptop")
    phone = with_ids(anonymousId="phone")
    store(site, laptop, phone, with_ids(anonymousId="bob"))
    # The shop's backend (secret key) says both browsers are Ann's: a browser alone may
    # not join another browser to a known person (docs/security.md, trust model).
    store(site, segment_event("identify", anonymousId="laptop", userId="ann"),
          segment_event("identify", anonymousId="phone", userId="ann"), trusted=True)  # fmt: skip
    store(other, with_ids(anonymousId="laptop"))
    assert AdIdentifiers.objects.filter(site=site).count() == 3
    store(site, segment_event(anonymousId="phone", context=withdrawal))
    assert set(AdIdentifiers.objects.filter(site=site).values_list(
        "visitor__anonymous_id", flat=True)) == {"bob"}  # fmt: skip
    assert AdIdentifiers.objects.filter(site=other).count() == 1


@pytest.mark.django_db
def test_a_refusal_later_in_the_same_batch_stores_nothing():
    site = make_site()
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    store(
        site,
        with_ids(timestamp=t0.isoformat()),
        segment_event(context={"consent": {"advertising": False}}, timestamp=datetime.now(UTC).isoformat()),
    )  # fmt: skip
    assert ids_of(site) is None


@pytest.mark.django_db
def test_keeping_ad_ids_takes_one_statement_whatever_the_batch_size():
    site = make_site()

    def statements(n: int, prefix: str) -> int:
        calls = [with_ids(anonymousId=f"{prefix}{i}") for i in range(n)]
        events = envelopes(site, *calls)
        with CaptureQueriesContext(connection) as queries:
            store_events(events, now=datetime.now(UTC))
        mine = [q for q in queries.captured_queries if "tracking_adidentifiers" in q["sql"]]
        return len(queries.captured_queries), len(mine)

    few, many = statements(3, "s"), statements(300, "l")
    assert few == many
    assert few[1] == 1
    assert AdIdentifiers.objects.filter(site=site).count() == 303


# --- never returned by a public endpoint -------------------------------------------------


@pytest.mark.django_db
def test_the_profile_api_does_not_return_them(client, redis_client):
    clear_key_cache()
    site = make_site()
    store(site, with_ids())
    auth = base64.b64encode(f"{site.secret_key}:".encode()).decode()
    response = client.get("/api/v1/profiles/anon-1", HTTP_AUTHORIZATION=f"Basic {auth}")
    assert response.status_code == 200
    body = response.content.decode()
    assert ids_of(site) is not None
    for value in ALL.values():
        assert value not in body
