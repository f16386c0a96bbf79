"""The requests the official SDKs make, as their sources build them, are accepted.

What each SDK sends was read from the pinned packages (tests/sdk/package.json);
tests/tracking/test_sdk_browser.py and tests/tracking/test_sdk_node.py run the SDKs themselves. These
pin the server's side of each detail, with the refusals that go with it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_site, segment_event
from tracking import buffer, flush
from tracking.keys import clear_key_cache
from tracking.models import Event, Profile
from tracking.trust import identity_proof

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh(redis_client):
    clear_key_cache()
    yield


@pytest.fixture
def site():
    return make_site(domains=["shop.test"])


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post(client, path, body, *, key, content_type="application/json", **headers):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(path, data, content_type=content_type, HTTP_AUTHORIZATION=basic(key),
                       **headers)  # fmt: skip


def stored(site) -> list[Event]:
    flush.flush_once()
    return list(Event.objects.filter(site=site).order_by("timestamp"))


def preflight(client, path="/v1/t", headers="", origin="https://shop.test"):
    return client.options(
        path, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers,
    )  # fmt: skip


# --- Segment Analytics.js 2.0: short paths, text/plain, its batch ------------------


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/v1/t", segment_event("track", event="Product Added")),
        ("/v1/p", segment_event("page", name="Home")),
        ("/v1/i", segment_event("identify", userId="u-1", traits={"plan": "pro"})),
        ("/v1/a", segment_event("alias", userId="u-1", previousId="anon-1")),
        ("/v1/g", segment_event("group", groupId="g-1")),
        ("/v1/s", segment_event("screen", name="Cart")),
    ],
)
def test_the_analytics_js_short_paths_take_one_call_each(client, site, path, call):
    # As analytics-next sends it: text/plain, writeKey and sentAt in the body, _metadata.
    call.pop("type")
    body = {**call, "writeKey": site.write_key, "sentAt": datetime.now(UTC).isoformat(),
            "_metadata": {"bundled": ["Segment.io"], "unbundled": []}}  # fmt: skip
    response = post(client, path, body, key=site.write_key, content_type="text/plain",
                    HTTP_ORIGIN="https://shop.test")  # fmt: skip
    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Origin"] == "https://shop.test"
    [event] = stored(site)
    assert event.message_id == call["messageId"]
    assert event.type == {"t": "track", "p": "page", "i": "identify", "a": "alias",
                          "g": "group", "s": "screen"}[path[-1]]  # fmt: skip


def test_a_short_path_fixes_the_type_whatever_the_body_says(client, site):
    body = segment_event("page", name="Home")  # a page call posted to /v1/t
    response = post(client, "/v1/t", body, key=site.write_key)
    assert response.status_code == 400
    assert response.json()["field"] == "body.event"


def test_the_analytics_js_batch_path_takes_its_batch_shape(client, site):
    # The batching delivery strategy: /v1/b, the events without their own sentAt.
    events = [segment_event("page", name="Home"), segment_event("track", event="Cart Viewed")]
    body = {"writeKey": site.write_key, "batch": events, "sentAt": datetime.now(UTC).isoformat()}
    response = post(client, "/v1/b", body, key=site.write_key, content_type="text/plain",
                    HTTP_X_RETRY_COUNT="1")  # fmt: skip
    assert response.status_code == 200
    assert sorted(e.name for e in stored(site)) == ["Cart Viewed", "Home"]


# --- preflights: what was asked for, within the allow-list -------------------------


@pytest.mark.parametrize(
    "asked",
    [
        "authorization",  # Analytics.js 2.0 (text/plain is safelisted)
        "authorization,x-retry-count",  # its retry
        "anonymousid,authorization,content-type",  # RudderStack JS v1.1
        "anonymousid,authorization,content-type,sentat",  # RudderStack JS v3
        "anonymousid,authorization,content-type,rsa-retry-attempt,rsa-retry-reason,"
        "rsa-since-first-attempt,rsa-since-last-attempt,sentat",  # its retry
        "anonymousid,authorization,content-type,rsa-recovered,sentat",  # reclaimed
    ],
)
def test_a_preflight_allows_the_headers_each_sdk_asks_for(client, site, asked):
    response = preflight(client, "/v1/track", asked)
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "https://shop.test"
    assert response["Access-Control-Allow-Headers"] == ", ".join(asked.split(","))
    assert "Access-Control-Request-Headers" in response["Vary"]


def test_a_preflight_does_not_echo_headers_outside_the_allow_list(client, site):
    response = preflight(client, "/v1/batch", "authorization,x-forwarded-for,cookie,x-evil")
    assert response["Access-Control-Allow-Headers"] == "authorization"


def test_a_preflight_for_a_short_path_is_answered_with_cors(client, site):
    response = preflight(client, "/v1/p", "authorization")
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "https://shop.test"


def test_the_origin_check_still_applies_to_the_short_paths(client, site):
    response = post(client, "/v1/t", segment_event(), key=site.write_key,
                    HTTP_ORIGIN="https://elsewhere.test")  # fmt: skip
    assert (response.status_code, response.json()["field"]) == (403, "Origin")
    assert len(stored(site)) == 0


# --- the RudderStack SDKs: headers, originalTimestamp, form-labelled gzip -----------


def rudder_event(type_: str = "track", **fields) -> dict:
    """A call as RudderStack's SDKs build it: originalTimestamp, not timestamp."""
    event = segment_event(type_)
    event["originalTimestamp"] = event.pop("timestamp")
    event.update(channel="web", sentAt=datetime.now(UTC).isoformat(), integrations={"All": True})
    event.update(fields)
    return event


def test_rudderstack_headers_are_accepted_on_the_post(client, site):
    event = rudder_event()
    response = post(
        client, "/v1/track", event, key=site.write_key,
        content_type="application/json;charset=UTF-8", HTTP_ORIGIN="https://shop.test",
        HTTP_ANONYMOUSID=base64.b64encode(b"anon-1").decode(), HTTP_SENTAT=event["sentAt"],
        HTTP_RSA_RETRY_ATTEMPT="1", HTTP_RSA_RETRY_REASON="server-503",
    )  # fmt: skip
    assert response.status_code == 200
    assert [e.message_id for e in stored(site)] == [event["messageId"]]


def test_original_timestamp_is_the_event_time_corrected_by_sent_at(client, site):
    # A browser clock two hours fast: the event happened 10 s before it was sent.
    fast = datetime.now(UTC) + timedelta(hours=2)
    event = rudder_event(originalTimestamp=(fast - timedelta(seconds=10)).isoformat(),
                         sentAt=fast.isoformat())  # fmt: skip
    assert post(client, "/v1/track", event, key=site.write_key).status_code == 200
    [stored_event] = stored(site)
    lag = datetime.now(UTC) - stored_event.timestamp
    assert timedelta(seconds=9) < lag < timedelta(seconds=30)


def test_a_resent_rudderstack_call_is_stored_once(client, site):
    event = rudder_event()
    assert post(client, "/v1/track", event, key=site.write_key).status_code == 200
    # The retry: the same messageId and originalTimestamp, a later sentAt.
    retry = {**event, "sentAt": (datetime.now(UTC) + timedelta(seconds=3)).isoformat()}
    assert post(client, "/v1/track", retry, key=site.write_key).status_code == 200
    assert len(stored(site)) == 1


def test_a_bad_original_timestamp_is_a_400_naming_it(client, site):
    response = post(client, "/v1/track", rudder_event(originalTimestamp="yesterday"),
                    key=site.write_key)  # fmt: skip
    assert (response.status_code, response.json()["field"]) == (400, "body.originalTimestamp")


def test_the_rudderstack_node_sdk_gzip_labelled_as_a_form_is_accepted(client, site):
    body = gzip.compress(json.dumps({"batch": [rudder_event()], "sentAt": "2026-01-01T00:00:00Z"}
                                    ).encode())  # fmt: skip
    response = post(client, "/v1/batch", body, key=site.secret_key,
                    content_type="application/x-www-form-urlencoded",
                    HTTP_CONTENT_ENCODING="gzip")  # fmt: skip
    assert response.status_code == 200, response.content
    assert len(stored(site)) == 1


def test_a_real_form_body_is_still_415(client, site):
    response = post(client, "/v1/batch", b"batch=1", key=site.write_key,
                    content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert (response.status_code, response.json()["field"]) == (415, "Content-Type")


def test_a_user_hash_in_context_traits_verifies_the_email_and_is_not_stored(client, site):
    # RudderStack JS sends an identify's traits in context.traits only.
    email = "Ann@Example.com"
    proof = hmac.new(site.secret_key.encode(), email.lower().encode(), hashlib.sha256)
    event = rudder_event("identify", userId="u-7")
    event["context"]["traits"] = {"email": email, "user_hash": proof.hexdigest()}
    response = post(client, "/v1/identify", event, key=site.write_key)
    assert response.status_code == 200, response.content
    [stored_event] = stored(site)
    assert "user_hash" not in json.dumps(stored_event.context)
    person = Profile.objects.get(site=site, user_id="u-7")
    assert (person.email, person.email_verified) == (email, True)


def test_a_wrong_user_hash_in_context_traits_is_a_400_naming_it(client, site):
    event = rudder_event("identify", userId="u-7")
    event["context"]["traits"] = {"email": "ann@example.com", "user_hash": "0" * 64}
    response = post(client, "/v1/identify", event, key=site.write_key)
    assert (response.status_code, response.json()["field"]) == (
        400, "body.context.traits.user_hash",
    )  # fmt: skip


def test_the_proof_is_dropped_from_later_calls_context_traits(client, site):
    # RudderStack JS v3 repeats the identify's traits, proof included, in every later
    # call's context: the proof (of the userId and that email) proves the later call.
    proof = identity_proof(site.secret_key, "u-7", "ann@example.com")
    event = rudder_event("track", userId="u-7")
    event["context"]["traits"] = {"email": "ann@example.com", "user_hash": proof}
    assert post(client, "/v1/track", event, key=site.write_key).status_code == 200
    [stored_event] = stored(site)
    assert stored_event.context["traits"] == {"email": "ann@example.com"}
    assert stored_event.trust == 1  # proven, not a browser's bare claim


def test_a_wrong_proof_repeated_in_a_later_calls_context_traits_is_a_400(client, site):
    event = rudder_event("track", userId="u-7")
    event["context"]["traits"] = {"email": "ann@example.com", "user_hash": "f" * 64}
    response = post(client, "/v1/track", event, key=site.write_key)
    assert (response.status_code, response.json()["field"]) == (
        400, "body.context.traits.user_hash",
    )  # fmt: skip


# --- the test-only lost-acknowledgement fault ----------------------------------------


def test_a_lost_acknowledgement_is_a_503_and_the_retry_stores_one_copy(client, site):
    buffer.LOST_ACKNOWLEDGEMENTS.count = 1
    try:
        event = segment_event()
        first = post(client, "/v1/batch", {"batch": [event]}, key=site.write_key)
        assert (first.status_code, first["Retry-After"]) == (503, "5")
        again = post(client, "/v1/batch", {"batch": [event]}, key=site.write_key)
        assert again.status_code == 200
    finally:
        buffer.LOST_ACKNOWLEDGEMENTS.count = 0
    assert [e.message_id for e in stored(site)] == [event["messageId"]]
