"""NUL bytes and broken Unicode on the audience tag endpoint and the privacy API are a
400 naming the field (they used to reach PostgreSQL and answer 500), and hypothesis
fuzzing of timestamps, numbers and NUL bytes on ingest, tags and the privacy API
never gets a 5xx."""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_site, segment_event
from tracking.keys import clear_key_cache

pytestmark = pytest.mark.django_db

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def site(redis_client, settings):
    settings.INGEST_CLIENT_EVENTS_PER_MINUTE = 0
    clear_key_cache()
    return make_site(events_per_minute=10**9)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode("utf-8", "surrogatepass")).decode()


def assert_well_behaved(response, what: str, *, unrouted_ok: bool = False) -> None:
    assert response.status_code < 500, what
    if unrouted_ok and response.status_code == 404 and "json" not in response["Content-Type"]:
        return  # an id holding "/" (%2F) makes a path no route matches: Django's 404
    if response.status_code >= 400:
        body = response.json()
        assert body.get("error") and body.get("field"), (what, body)


@pytest.mark.parametrize("anonymous_id", ["a%00b", "%00"])
def test_a_nul_in_the_tag_endpoints_id_is_a_400(client, site, anonymous_id):
    response = client.get(f"/v1/audiences/{site.write_key}/{anonymous_id}")
    assert response.status_code == 400
    assert response.json()["field"] == "anonymousId"


def test_the_tag_endpoint_still_answers_an_honest_browser(client, site):
    response = client.get(f"/v1/audiences/{site.write_key}/anon-1")
    assert response.status_code == 200
    assert response.json() == {"tags": []}


@pytest.mark.parametrize(
    ("query", "field"),
    [("email=a%00@example.com", "email"), ("anonymousId=a%00b", "anonymousId")],
)
@pytest.mark.parametrize("method", ["get", "delete"])
def test_a_nul_in_the_privacy_api_is_a_400_naming_the_field(client, site, query, field, method):
    response = getattr(client, method)(
        f"/api/v1/privacy/person?{query}", HTTP_AUTHORIZATION=basic(site.secret_key)
    )
    assert response.status_code == 400
    assert response.json()["field"] == field


# --- fuzzing ---------------------------------------------------------------------

NUL_TEXT = st.lists(
    st.sampled_from(["\x00", "\ud800", "a", "@", "%00", "é", "x" * 50]) | st.text(max_size=5),
    max_size=6,
).map("".join)
TIMES = (
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.builds(
        lambda y, h: f"{y:04d}-01-01T00:00:00{h}",
        st.sampled_from([1, 2, 1970, 2026, 9998, 9999]),
        st.sampled_from(["Z", "+01:00", "-01:00", "+23:59", "-23:59", ""]),
    )
    | NUL_TEXT
)
NUMBERS = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.sampled_from(["1e10000000", "1e999", "-0", "0.1", "19.99", "NaN", "9" * 400, "1" * 5000])
    | st.sampled_from([1e308, 10**400, -(10**20)])
)
RAW_NUMBERS = st.sampled_from(["1e999", "-1e999", "1e-999", "1" + "0" * 400, "1e10000000"])


@fuzz
@given(
    timestamp=TIMES,
    sent_at=TIMES | st.none(),
    event_sent_at=TIMES | st.none(),
    price=NUMBERS,
    quantity=NUMBERS,
    name=NUL_TEXT,
    raw=RAW_NUMBERS,
    trusted=st.booleans(),
)
def test_ingest_never_fails_on_times_numbers_or_nul_bytes(
    client, site, timestamp, sent_at, event_sent_at, price, quantity, name, raw, trusted
):
    event = segment_event(
        timestamp=timestamp,
        properties={"products": [{"price": price, "quantity": quantity, "name": name}]},
    )
    if event_sent_at is not None:
        event["sentAt"] = event_sent_at
    body = {"batch": [segment_event(), event]}
    if sent_at is not None:
        body["sentAt"] = sent_at
    text = json.dumps(body, allow_nan=True)
    # A number literal that Python's json would never write: 1e999, 400 digits...
    text = text.replace('"properties": {}', f'"properties": {{"raw": {raw}}}', 1)
    key = site.secret_key if trusted else site.write_key
    response = client.post(
        "/v1/batch", text, content_type="application/json", HTTP_AUTHORIZATION=basic(key)
    )
    assert_well_behaved(response, text[:300])


@fuzz
@given(
    anonymous_id=NUL_TEXT.filter(bool),  # an empty one is another URL (no route: 404)
    key=st.sampled_from(["write", "secret"]) | NUL_TEXT.filter(bool),
)
def test_the_tag_endpoint_never_fails(client, site, anonymous_id, key):
    write_key = {"write": site.write_key, "secret": site.secret_key}.get(key, key)
    key_part = quote(write_key, safe="", errors="surrogatepass")
    id_part = quote(anonymous_id, safe="", errors="surrogatepass")
    response = client.get(f"/v1/audiences/{key_part}/{id_part}")
    assert_well_behaved(response, repr((anonymous_id, key)), unrouted_ok=True)


@fuzz
@given(
    email=NUL_TEXT | st.none(),
    anonymous_id=NUL_TEXT | st.none(),
    method=st.sampled_from(["get", "delete"]),
)
def test_the_privacy_api_never_fails(client, site, email, anonymous_id, method):
    query = "&".join(
        f"{name}={quote(value, safe='', errors='surrogatepass')}"
        for name, value in (("email", email), ("anonymousId", anonymous_id))
        if value is not None
    )
    response = getattr(client, method)(
        f"/api/v1/privacy/person?{query}", HTTP_AUTHORIZATION=basic(site.secret_key)
    )
    assert_well_behaved(response, query)
