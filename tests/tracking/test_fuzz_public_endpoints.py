"""Property-based fuzzing of the public endpoints (hypothesis): never a 5xx, and every
refusal is JSON naming the error and the field.

Each test is bounded (FUZZ_EXAMPLES examples, no deadline) so the file runs in well
under a minute. Bodies aim at the parser's depths: random JSON, Segment-shaped calls
whose fields hold random values, random bytes, gzip of either, random content types,
encodings, lengths, keys and origins.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_site
from tracking.keys import clear_key_cache

pytestmark = pytest.mark.django_db

# FUZZ_EXAMPLES=2000 for a deeper run by hand.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

INGEST_PATHS = ["/v1/batch", "/v1/track", "/v1/identify", "/v1/b", "/v1/i"]


def basic(username: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:".encode("utf-8", "surrogatepass")).decode()


# --- strategies ------------------------------------------------------------------

# Characters PostgreSQL, JSON, base64 or URLs treat specially, mixed into random text.
TRICKY = ["\x00", "\ud800", "\udfff", "\u202e", "%00", "\\u0000", ":", "\ufeff", "x" * 250]
text = st.text(max_size=40) | st.lists(
    st.sampled_from(TRICKY) | st.text(max_size=4), max_size=4
).map("".join)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)
timestamps = st.datetimes().map(lambda d: d.isoformat()) | text | json_values
contexts = st.fixed_dictionaries(
    {},
    optional={
        "consent": st.dictionaries(
            st.sampled_from(["analytics", "email", "advertising", "other"]), json_values
        )
        | json_values,
        "ip": st.ip_addresses().map(str) | json_values,
        "userAgent": st.sampled_from(["Googlebot/2.1", "Mozilla/5.0"]) | json_values,
        "traits": json_values,
        "user_hash": json_values,
        "gpc": json_values,
        "timezone": json_values,
    },
)
FIELDS = ["type", "messageId", "anonymousId", "userId", "previousId", "event", "name",
          "timestamp", "originalTimestamp", "sentAt", "properties", "traits",
          "context"]  # fmt: skip
# A valid call first, so most examples get deep into the parser, then one or two
# fields replaced by anything or removed.
valid_calls = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "page", "screen", "identify", "alias", "group"]),
        "messageId": st.uuids().map(str),
        "anonymousId": st.sampled_from(["anon-1", "anon-2"]),
        "event": st.sampled_from(["Order Completed", "Product Viewed", "Signed Up"]),
        "timestamp": st.datetimes(
            min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
        ).map(lambda d: d.isoformat()),
        "properties": st.dictionaries(text, json_values, max_size=4),
        "context": contexts,
    },
    optional={
        "userId": st.sampled_from(["u-1", "u-2"]),
        "previousId": st.just("anon-0"),
        "traits": st.fixed_dictionaries(
            {}, optional={"email": st.emails() | text, "user_hash": text, "name": text}
        ),
    },
)
segment_calls = st.builds(
    lambda call, replaced, removed: {
        **{k: v for k, v in call.items() if k not in removed},
        **replaced,
    },
    valid_calls,
    st.dictionaries(st.sampled_from(FIELDS), json_values | timestamps, max_size=2),
    st.sets(st.sampled_from(FIELDS), max_size=2),
)
payloads = (
    json_values
    | segment_calls
    | segment_calls  # twice: most examples should reach the deep checks
    | st.fixed_dictionaries(
        {"batch": st.lists(segment_calls, max_size=5) | json_values},
        optional={"sentAt": timestamps, "writeKey": json_values},
    )
)
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/json; charset=utf-8",
        "text/html",
        "",
        "application/x-www-form-urlencoded",
    ]
) | st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t)
encodings = st.sampled_from(["", "identity", "gzip", "GZIP", "br", "deflate"]) | st.text(
    max_size=10
).filter(lambda t: "\n" not in t and "\r" not in t)
header_text = st.text(max_size=60).filter(lambda t: "\n" not in t and "\r" not in t)
# Origins and Referers, including ones urllib cannot parse.
url_like = st.sampled_from(
    ["", "https://shop.test", "https://evil.test", "https://a.example.com/p?q=1", "null",
     "http://[", "http://[::1", "https://[v1.x]/", "https://shop.test:notaport/", "//x", "%"]
) | header_text  # fmt: skip
# A URL path segment: no "/" (it would be another URL) and no lone surrogates (no URL
# can carry them).
path_ids = text.filter(lambda t: t and "/" not in t).filter(
    lambda t: not any("\ud800" <= c <= "\udfff" for c in t)
)


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["json", "bytes", "gzip-json", "gzip-bytes", "bad-utf8"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "bad-utf8":
        return b'{"batch": [{"type": "track", "event": "\xff\xfe"}]}'
    raw = (
        json.dumps(draw(payloads), allow_nan=True).encode()
        if kind.endswith("json")
        else draw(st.binary(max_size=300))
    )
    return gzip.compress(raw) if kind.startswith("gzip") else raw


# --- the property ----------------------------------------------------------------


def assert_well_behaved(response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.content[:300])
    if 400 <= response.status_code < 500 and response.status_code != 405:
        assert response["Content-Type"].startswith("application/json"), what
        body = response.json()
        assert isinstance(body.get("error"), str) and body["error"], (what, body)
        assert isinstance(body.get("field"), str) and body["field"], (what, body)


@pytest.fixture
def site(redis_client, settings):
    settings.INGEST_CLIENT_EVENTS_PER_MINUTE = 0  # reach the parser, not the rate limit
    clear_key_cache()
    return make_site(domains=["shop.test", "*.example.com"], events_per_minute=10**9)


@fuzz
@given(
    path=st.sampled_from(INGEST_PATHS),
    payload=payloads,
    key_kind=st.sampled_from(["write", "secret", "in-body", "none"]) | text,
    origin=url_like,
)
def test_ingest_never_fails_on_any_json(client, site, path, payload, key_kind, origin):
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    if key_kind == "write":
        headers["HTTP_AUTHORIZATION"] = basic(site.write_key)
    elif key_kind == "secret":
        headers["HTTP_AUTHORIZATION"] = basic(site.secret_key)
    elif key_kind == "in-body" and isinstance(payload, dict):
        payload = {**payload, "writeKey": site.write_key}
    elif key_kind != "none":
        headers["HTTP_AUTHORIZATION"] = basic(key_kind)  # any username at all
    body = json.dumps(payload, allow_nan=True)
    response = client.post(path, body, content_type="application/json", **headers)
    assert_well_behaved(response, f"{path} {body[:200]}")


@fuzz
@given(
    path=st.sampled_from(INGEST_PATHS),
    body=bodies(),
    content_type=content_types,
    encoding=encodings,
    length=st.sampled_from([None, "", "abc", "-1", "0", "99999999999999999999"]),
    auth=st.sampled_from(["write", "garbage", "none"]) | header_text | text.map(basic),
)
def test_ingest_never_fails_on_any_bytes_headers_or_encoding(
    client, site, path, body, content_type, encoding, length, auth
):
    headers = {}
    if auth == "write":
        headers["HTTP_AUTHORIZATION"] = basic(site.write_key)
    elif auth == "garbage":
        headers["HTTP_AUTHORIZATION"] = "Basic %%%not-base64"
    elif auth != "none":
        headers["HTTP_AUTHORIZATION"] = auth
    if encoding:
        headers["HTTP_CONTENT_ENCODING"] = encoding
    if length is not None:
        # A length that claims more than was sent cannot be tested in-process
        # (the test client refuses to over-read); the real server waits instead.
        headers["CONTENT_LENGTH"] = (
            length if not length.isdigit() else str(min(int(length), len(body)))
        )
    response = client.post(path, body, content_type=content_type, **headers)
    assert_well_behaved(response, f"{path} {content_type!r} {encoding!r} {body[:100]!r}")


@fuzz
@given(key=path_ids, origin=url_like)
def test_the_snippet_settings_never_fail(client, site, key, origin):
    response = client.get(f"/v1/settings/{quote(key, safe='')}", HTTP_ORIGIN=origin)
    assert_well_behaved(response, repr(key))


@fuzz
@given(
    identifier=path_ids,
    auth=st.sampled_from(["secret", "write", "none"]) | header_text | text.map(basic),
)
def test_the_profile_api_never_fails(client, site, identifier, auth):
    headers = {}
    if auth == "secret":
        headers["HTTP_AUTHORIZATION"] = basic(site.secret_key)
    elif auth == "write":
        headers["HTTP_AUTHORIZATION"] = basic(site.write_key)
    elif auth != "none":
        headers["HTTP_AUTHORIZATION"] = auth
    response = client.get(f"/api/v1/profiles/{quote(identifier, safe='')}", **headers)
    assert_well_behaved(response, repr(identifier))


pixel_params = st.dictionaries(
    st.sampled_from(["k", "url", "ref", "title", "aid", "mid", "other"]),
    url_like | text.filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t)),
    max_size=6,
)


@fuzz
@given(params=pixel_params, with_key=st.booleans(), referer=url_like, gpc=st.booleans())
def test_the_pixel_answers_its_gif_and_never_hits_an_error(
    client, site, params, with_key, referer, gpc, caplog
):
    if with_key:
        params = {**params, "k": site.write_key}
    headers = {"HTTP_REFERER": referer} if referer else {}
    if gpc:
        headers["HTTP_SEC_GPC"] = "1"
    caplog.clear()
    response = client.get("/v1/p.gif", params, **headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    # The pixel answers its GIF even on an error, so look at what it logged instead.
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == [], (params, referer, [r.getMessage() for r in errors])
