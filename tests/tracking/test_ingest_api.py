"""The ingest API: Segment's HTTP tracking spec, its errors, keys and limits."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime

import pytest

from tests.factories import make_site, segment_event
from tracking import flush
from tracking.ingest import MAX_BATCH_EVENTS, MAX_BODY_BYTES, MAX_STRING_LENGTH
from tracking.keys import clear_key_cache
from tracking.models import DroppedCount, Event, EventKey, Profile
from tracking.storage import LEGACY_TIME

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh(redis_client):
    clear_key_cache()
    yield


@pytest.fixture
def site():
    return make_site()


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post(client, path, body, *, key=None, content_type="application/json", **headers):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    if key:
        headers["HTTP_AUTHORIZATION"] = basic(key)
    return client.post(path, data, content_type=content_type, **headers)


def stored_events(site):
    flush.flush_once()
    return list(Event.objects.filter(site=site).order_by("timestamp"))


def test_a_batch_is_accepted_and_stored_once(client, site):
    batch = {"batch": [segment_event(), segment_event("page", name="Home")]}
    response = post(client, "/v1/batch", batch, key=site.write_key)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    events = stored_events(site)
    assert [(e.type, e.name) for e in events] == [("track", "Product Viewed"), ("page", "Home")]


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/track", {"event": "Product Added", "anonymousId": "a"}, ("track", "Product Added")),
        ("/v1/page", {"name": "Pricing", "anonymousId": "a"}, ("page", "Pricing")),
        ("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}}, ("identify", "")),
        ("/v1/alias", {"userId": "u2", "previousId": "a"}, ("alias", "")),
    ],
)
def test_each_single_call_endpoint_stores_its_type(client, site, path, body, expected):
    response = post(client, path, body, key=site.write_key)
    assert response.status_code == 200, response.content
    assert [(e.type, e.name) for e in stored_events(site)] == [expected]


def test_the_write_key_may_come_in_the_body(client, site):
    response = post(client, "/v1/batch", {"writeKey": site.write_key, "batch": [segment_event()]})
    assert response.status_code == 200
    assert len(stored_events(site)) == 1


def test_gzipped_json_is_accepted(client, site):
    body = gzip.compress(json.dumps({"batch": [segment_event()]}).encode())
    response = post(client, "/v1/batch", body, key=site.write_key, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200
    assert len(stored_events(site)) == 1


def test_text_plain_json_is_accepted_for_beacons(client, site):
    body = json.dumps({"writeKey": site.write_key, "batch": [segment_event()]})
    response = post(client, "/v1/batch", body, content_type="text/plain;charset=UTF-8")
    assert response.status_code == 200


def test_a_replayed_message_id_is_stored_once(client, site):
    event = segment_event()
    for _ in range(3):
        assert post(client, "/v1/batch", {"batch": [event]}, key=site.write_key).status_code == 200
    assert (
        post(client, "/v1/batch", {"batch": [event, event]}, key=site.write_key).status_code == 200
    )
    assert len(stored_events(site)) == 1


def test_a_retry_sent_later_is_stored_once_though_its_corrected_time_differs(client, site):
    # An SDK's retry repeats messageId and timestamp but carries a new sentAt, so the
    # skew-corrected time differs between the copies; the dedupe key uses the sent one.
    event = segment_event(timestamp="2026-11-28T10:00:00Z")
    for sent_at in ("2026-11-28T10:00:01Z", "2026-11-28T10:07:30Z", "2026-11-28T11:00:00Z"):
        body = {"batch": [event], "sentAt": sent_at}
        assert post(client, "/v1/batch", body, key=site.write_key).status_code == 200
        flush.flush_once()
    assert len(stored_events(site)) == 1


def test_a_retry_of_an_event_sent_without_a_timestamp_is_stored_once(client, site):
    event = segment_event()
    del event["timestamp"]
    for _ in range(2):
        assert post(client, "/v1/batch", {"batch": [event]}, key=site.write_key).status_code == 200
        flush.flush_once()
    assert len(stored_events(site)) == 1


def test_a_timestamp_before_1971_is_keyed_like_none_and_never_as_a_legacy_key(client, site):
    event = segment_event(timestamp="0001-01-01T00:00:00Z")
    assert post(client, "/v1/batch", {"batch": [event]}, key=site.secret_key).status_code == 400
    event = segment_event(timestamp="0001-01-01T00:00:00Z")
    assert post(client, "/v1/batch", {"batch": [event]}, key=site.write_key).status_code == 200
    assert len(stored_events(site)) == 1
    key = EventKey.objects.get(site_id=site.id, message_id=event["messageId"])
    assert key.dedupe_at.year == 1970


def test_a_message_id_stored_before_the_key_had_a_time_is_still_a_duplicate(client, site):
    event = segment_event()
    EventKey.objects.create(site_id=site.id, dedupe_at=datetime.fromisoformat(LEGACY_TIME),
                            message_id=event["messageId"], received_at=datetime.now(UTC))  # fmt: skip
    fresh = segment_event()
    body = {"batch": [event, fresh]}
    assert post(client, "/v1/batch", body, key=site.write_key).status_code == 200
    assert [e.message_id for e in stored_events(site)] == [fresh["messageId"]]


def test_the_same_message_id_on_two_sites_is_two_events(client, site):
    other = make_site(name="Other")
    event = segment_event()
    post(client, "/v1/batch", {"batch": [event]}, key=site.write_key)
    post(client, "/v1/batch", {"batch": [event]}, key=other.write_key)
    flush.flush_once()
    assert Event.objects.filter(message_id=event["messageId"]).count() == 2


def test_ecommerce_and_custom_events_are_kept_with_their_properties(client, site):
    order = segment_event(
        event="Order Completed",
        properties={"order_id": "o1", "revenue": 42.5, "products": [{"product_id": "p1"}]},
    )
    custom = segment_event(event="Wishlist Shared", properties={"size": 3})
    post(client, "/v1/batch", {"batch": [order, custom]}, key=site.write_key)
    events = {e.name: e for e in stored_events(site)}
    assert events["Order Completed"].properties["products"] == [{"product_id": "p1"}]
    assert events["Wishlist Shared"].properties == {"size": 3}


# --- the bad-input matrix ----------------------------------------------------------


def error(response):
    return response.status_code, response.json().get("field")


def test_no_key_is_401(client, site):
    assert error(post(client, "/v1/batch", {"batch": [segment_event()]})) == (401, "writeKey")


def test_an_unknown_key_is_401(client, site):
    response = post(client, "/v1/batch", {"batch": [segment_event()]}, key="wk_nope")
    assert error(response) == (401, "writeKey")
    assert response.json()["error"] == "unknown write key"


def test_a_malformed_authorization_header_is_401(client, site):
    response = client.post(
        "/v1/batch", "{}", content_type="application/json", HTTP_AUTHORIZATION="Basic %%%"
    )
    assert error(response) == (401, "Authorization")


def test_a_foreign_origin_is_403(client, site):
    response = post(
        client, "/v1/batch", {"batch": [segment_event()]}, key=site.write_key,
        HTTP_ORIGIN="https://evil.example",
    )  # fmt: skip
    assert error(response) == (403, "Origin")


def test_an_allowed_origin_gets_cors_headers(client, site):
    response = post(
        client, "/v1/batch", {"batch": [segment_event()]}, key=site.write_key,
        HTTP_ORIGIN="https://shop.test",
    )  # fmt: skip
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://shop.test"


def test_a_wildcard_domain_allows_subdomains(client):
    site = make_site(domains=["*.example.com"])
    for origin, status in [
        ("https://www.example.com", 200),
        ("https://example.com", 200),
        ("https://badexample.com", 403),
    ]:
        response = post(client, "/v1/batch", {"batch": [segment_event()]}, key=site.write_key,
                        HTTP_ORIGIN=origin)  # fmt: skip
        assert response.status_code == status, origin


def test_the_secret_key_skips_the_origin_check(client, site):
    response = post(
        client, "/v1/batch", {"batch": [segment_event()]}, key=site.secret_key,
        HTTP_ORIGIN="https://anywhere.example",
    )  # fmt: skip
    assert response.status_code == 200


def test_preflight_is_answered(client, site):
    response = client.options("/v1/batch", HTTP_ORIGIN="https://shop.test")
    assert response.status_code == 204
    assert "POST" in response["Access-Control-Allow-Methods"]


def test_a_body_over_the_limit_is_413(client, site):
    body = json.dumps({"batch": [segment_event()], "pad": "x" * MAX_BODY_BYTES})
    assert error(post(client, "/v1/batch", body, key=site.write_key)) == (413, "body")


def test_a_gzip_bomb_is_413(client, site):
    body = gzip.compress(b'{"batch": [' + b" " * (MAX_BODY_BYTES * 4) + b"]}")
    response = post(client, "/v1/batch", body, key=site.write_key, HTTP_CONTENT_ENCODING="gzip")
    assert error(response) == (413, "body")


def test_too_many_events_is_413(client, site):
    batch = {"batch": [segment_event() for _ in range(MAX_BATCH_EVENTS + 1)]}
    assert error(post(client, "/v1/batch", batch, key=site.write_key)) == (413, "batch")


def test_an_event_over_the_limit_is_413(client, site):
    big = segment_event(properties={f"k{i}": "x" * 1000 for i in range(40)})
    response = post(client, "/v1/batch", {"batch": [big]}, key=site.write_key)
    assert error(response) == (413, "batch[0]")


def test_a_wrong_content_type_is_415(client, site):
    response = post(client, "/v1/batch", "a=b", key=site.write_key,
                    content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert error(response) == (415, "Content-Type")


def test_an_unknown_content_encoding_is_415(client, site):
    response = post(client, "/v1/batch", {"batch": []}, key=site.write_key,
                    HTTP_CONTENT_ENCODING="br")  # fmt: skip
    assert error(response) == (415, "Content-Encoding")


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "track", "anonymousId": "a"}, "batch[0].event"),
        ({"type": "track", "event": "X"}, "batch[0].anonymousId"),
        ({"type": "shout", "anonymousId": "a"}, "batch[0].type"),
        ({"type": "track", "event": "X", "anonymousId": "a", "properties": []}, "batch[0].properties"),
        ({"type": "track", "event": "X", "anonymousId": "a", "timestamp": "yesterday"},
         "batch[0].timestamp"),
        ({"type": "track", "event": "X" * 201, "anonymousId": "a"}, "batch[0].event"),
        ({"type": "track", "event": "X", "anonymousId": {"id": 1}}, "batch[0].anonymousId"),
        ({"type": "track", "event": "X", "anonymousId": "a",
          "properties": {"s": "y" * (MAX_STRING_LENGTH + 1)}}, "batch[0].properties.s"),
        ({"type": "track", "event": "X", "anonymousId": "a",
          "properties": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}},
         "batch[0].properties.a.b.c.d.e.f.g"),
        ({"type": "track", "event": "X", "anonymousId": "a",
          "properties": {f"k{i}": i for i in range(201)}}, "batch[0].properties"),
        ({"type": "track", "event": "X", "anonymousId": "a", "properties": {"n": "a\u0000b"}},
         "batch[0].properties.n"),
        ({"type": "identify", "anonymousId": "a", "traits": {"email": "not-an-email"}},
         "batch[0].traits.email"),
        ({"type": "alias", "userId": "u"}, "batch[0].previousId"),
        ({"type": "track", "event": "X", "anonymousId": "a", "context": {"consent": "yes"}},
         "batch[0].context.consent"),
    ],
)  # fmt: skip
def test_an_invalid_event_is_400_naming_the_field(client, site, event, field):
    response = post(client, "/v1/batch", {"batch": [event]}, key=site.write_key)
    assert error(response) == (400, field)
    assert response.json()["error"]
    assert not stored_events(site)


def test_one_bad_event_refuses_the_whole_batch(client, site):
    batch = {"batch": [segment_event(), {"type": "track", "anonymousId": "a"}]}
    assert error(post(client, "/v1/batch", batch, key=site.write_key)) == (400, "batch[1].event")
    assert not stored_events(site)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"batch": "no"}', "batch"),
        (b'{"batch": []}', "batch"),
        (b'{"batch": [1]}', "batch[0]"),
        (b'{"batch": [{"type": "track", "event": "X", "anonymousId": "a", "n": NaN}]}', "body"),
    ],
)
def test_a_malformed_body_is_400(client, site, body, field):
    assert error(post(client, "/v1/batch", body, key=site.write_key)) == (400, field)


def test_get_is_405(client, site):
    assert client.get("/v1/batch").status_code == 405


def test_a_site_over_its_rate_is_429_with_retry_after(client):
    site = make_site(events_per_minute=3)
    ok = post(client, "/v1/batch", {"batch": [segment_event() for _ in range(3)]},
              key=site.write_key)  # fmt: skip
    assert ok.status_code == 200
    limited = post(client, "/v1/batch", {"batch": [segment_event()]}, key=site.write_key)
    assert error(limited) == (429, "rate")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert len(stored_events(site)) == 3


def test_a_client_over_its_rate_is_429(client, site, settings):
    settings.INGEST_CLIENT_EVENTS_PER_MINUTE = 2
    assert (
        post(client, "/v1/batch", {"batch": [segment_event()] * 2}, key=site.write_key).status_code
        == 200
    )
    limited = post(client, "/v1/batch", {"batch": [segment_event()]}, key=site.write_key,
                   REMOTE_ADDR="127.0.0.1")  # fmt: skip
    assert limited.status_code == 429
    other_client = post(client, "/v1/batch", {"batch": [segment_event()]}, key=site.write_key,
                        REMOTE_ADDR="10.9.8.7")  # fmt: skip
    assert other_client.status_code == 200


def test_behind_the_proxy_each_client_has_its_own_rate_and_forged_hops_do_not_help(
    client, site, settings
):
    settings.INGEST_CLIENT_EVENTS_PER_MINUTE = 2
    settings.TRUSTED_PROXY_HEADER, settings.TRUSTED_PROXY_COUNT = "HTTP_X_FORWARDED_FOR", 1

    def send(forwarded: str) -> int:
        return post(client, "/v1/batch", {"batch": [segment_event()]}, key=site.write_key,
                    REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded).status_code  # fmt: skip

    # The client forges a new leftmost hop each time; the proxy appends its real address.
    assert [send(f"192.0.2.{n}, 203.0.113.7") for n in range(3)] == [200, 200, 429]
    # Everyone else behind the same proxy keeps their own allowance.
    assert send("198.51.100.20") == 200


def test_without_a_trusted_proxy_a_forwarded_header_does_not_escape_the_rate(
    client, site, settings
):
    settings.INGEST_CLIENT_EVENTS_PER_MINUTE = 2
    statuses = [
        post(client, "/v1/batch", {"batch": [segment_event()]}, key=site.write_key,
             REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code
        for n in range(3)
    ]  # fmt: skip
    assert statuses == [200, 200, 429]


def test_client_ips_come_from_the_trusted_proxy_header_only_when_configured(client, site, settings):
    event = segment_event()
    post(client, "/v1/batch", {"batch": [event]}, key=site.write_key,
         HTTP_X_FORWARDED_FOR="203.0.113.9", REMOTE_ADDR="10.0.0.1")  # fmt: skip
    settings.TRUSTED_PROXY_HEADER = "HTTP_X_FORWARDED_FOR"
    proxied = segment_event()
    post(client, "/v1/batch", {"batch": [proxied]}, key=site.write_key,
         HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.9", REMOTE_ADDR="10.0.0.1")  # fmt: skip
    ips = {e.message_id: e.context["ip"] for e in stored_events(site)}
    assert ips[event["messageId"]] == "10.0.0.0"  # REMOTE_ADDR, anonymized
    assert ips[proxied["messageId"]] == "203.0.113.0"  # the nearest proxy's client


def test_ips_are_kept_whole_when_the_site_says_so(client):
    site = make_site(anonymize_ip=False)
    post(client, "/v1/batch", {"batch": [segment_event()]}, key=site.write_key,
         REMOTE_ADDR="192.0.2.77")  # fmt: skip
    assert stored_events(site)[0].context["ip"] == "192.0.2.77"


def test_bots_are_dropped_and_counted(client, site):
    bot = segment_event(context={"userAgent": "Googlebot/2.1 (+http://www.google.com/bot.html)"})
    human = segment_event(
        context={"userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, "
                 "like Gecko) Chrome/120.0 Safari/537.36"}
    )  # fmt: skip
    assert post(client, "/v1/batch", {"batch": [bot, human]}, key=site.write_key).status_code == 200
    assert [e.message_id for e in stored_events(site)] == [human["messageId"]]
    flush.fold_dropped_counts()
    assert DroppedCount.objects.get(site=site, reason="bot").count == 1


# --- write key vs secret key, verified email ---------------------------------------


def identify(email, **extra):
    return segment_event("identify", userId="u1", traits={"email": email, **extra.pop("traits", {})},
                         **extra)  # fmt: skip


def test_a_browser_identify_with_an_email_is_unverified(client, site):
    post(client, "/v1/batch", {"batch": [identify("Ann@Example.com")]}, key=site.write_key)
    flush.flush_once()
    profile = Profile.objects.get(site=site, user_id="u1")
    assert profile.email == "Ann@Example.com"
    assert profile.email_verified is False


def test_a_browser_identify_with_a_valid_user_hash_is_verified(client, site):
    user_hash = site.user_hash("ann@example.com")
    event = identify("Ann@Example.com ", traits={"user_hash": user_hash})
    assert post(client, "/v1/batch", {"batch": [event]}, key=site.write_key).status_code == 200
    flush.flush_once()
    profile = Profile.objects.get(site=site, user_id="u1")
    assert profile.email_verified is True
    assert "user_hash" not in profile.traits


def test_a_wrong_user_hash_is_refused(client, site):
    event = identify("ann@example.com", context={"user_hash": "0" * 64})
    response = post(client, "/v1/batch", {"batch": [event]}, key=site.write_key)
    assert error(response) == (400, "batch[0].context.user_hash")


def test_a_wrong_user_hash_in_traits_is_named_there(client, site):
    event = identify("ann@example.com", traits={"user_hash": "0" * 64})
    response = post(client, "/v1/batch", {"batch": [event]}, key=site.write_key)
    assert error(response) == (400, "batch[0].traits.user_hash")


def test_a_secret_key_identify_sets_a_verified_email(client, site):
    post(client, "/v1/batch", {"batch": [identify("ann@example.com")]}, key=site.secret_key)
    flush.flush_once()
    assert Profile.objects.get(site=site, user_id="u1").email_verified is True


def test_an_unverified_email_never_replaces_a_verified_one(client, site):
    post(client, "/v1/batch", {"batch": [identify("ann@example.com")]}, key=site.secret_key)
    flush.flush_once()
    post(client, "/v1/batch", {"batch": [identify("attacker@evil.example")]}, key=site.write_key)
    flush.flush_once()
    profile = Profile.objects.get(site=site, user_id="u1")
    assert (profile.email, profile.email_verified) == ("ann@example.com", True)


def test_a_rotated_secret_key_keeps_working_during_the_overlap(client, site):
    old = site.secret_key
    site.rotate_secret_key()
    clear_key_cache()
    assert post(client, "/v1/batch", {"batch": [segment_event()]}, key=old).status_code == 200
    assert (
        post(client, "/v1/batch", {"batch": [segment_event()]}, key=site.secret_key).status_code
        == 200
    )


def test_browser_timestamps_cannot_backfill_but_the_secret_key_can(client, site):
    old = segment_event(timestamp="2026-01-02T03:04:05Z")
    old_server = segment_event(timestamp="2026-01-02T03:04:05Z")
    post(client, "/v1/batch", {"batch": [old]}, key=site.write_key)
    post(client, "/v1/batch", {"batch": [old_server]}, key=site.secret_key)
    events = {e.message_id: e for e in stored_events(site)}
    assert events[old["messageId"]].timestamp.year == 2026
    assert events[old["messageId"]].timestamp.month != 1
    assert events[old["messageId"]].context["originalTimestamp"] == "2026-01-02T03:04:05Z"
    assert events[old_server["messageId"]].timestamp.isoformat() == "2026-01-02T03:04:05+00:00"


def test_client_clock_skew_is_corrected_with_sent_at(client, site):
    event = segment_event(timestamp="2030-01-01T00:00:00Z")
    post(client, "/v1/batch", {"batch": [event], "sentAt": "2030-01-01T00:00:10Z"},
         key=site.write_key)  # fmt: skip
    stored = stored_events(site)[0]
    assert abs((stored.received_at - stored.timestamp).total_seconds() - 10) < 1


def test_site_settings_tell_the_snippet_the_consent_mode(client):
    site = make_site(consent_mode="opt-in", cookie_days=30)
    response = client.get(f"/v1/settings/{site.write_key}")
    assert response.status_code == 200
    assert response.json()["consentMode"] == "opt-in"
    assert response.json()["cookieDays"] == 30
    assert client.get("/v1/settings/wk_unknown").status_code == 404
