"""Inputs the fuzzer (test_fuzz_public_endpoints.py) found answered with a 500.

PostgreSQL cannot hold NUL characters or lone surrogates; a key or id carrying
one reached a query and psycopg2 raised before it was sent.
"""

import base64
import json

import pytest

from tests.factories import make_site
from tracking.keys import clear_key_cache

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(redis_client):
    clear_key_cache()
    return make_site()


def basic(username: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:".encode()).decode()


def test_a_write_key_with_a_nul_character_is_an_unknown_key(client, site):
    response = client.post(
        "/v1/batch", "{}", content_type="application/json", HTTP_AUTHORIZATION=basic("\x00")
    )
    assert response.status_code == 401
    assert response.json()["field"] == "writeKey"


@pytest.mark.parametrize("key", ["wk_\x00", "wk_\ud800"])
def test_a_write_key_in_the_body_that_postgres_cannot_hold_is_an_unknown_key(client, site, key):
    response = client.post("/v1/track", json.dumps({"writeKey": key}), content_type="text/plain")
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": "unknown write key", "field": "writeKey"}


def test_the_snippet_settings_of_a_key_with_a_nul_character_are_not_found(client, site):
    response = client.get("/v1/settings/wk_%00")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown write key", "field": "writeKey"}


def test_the_profile_of_an_id_with_a_nul_character_is_not_found(client, site):
    response = client.get("/api/v1/profiles/a%00b", HTTP_AUTHORIZATION=basic(site.secret_key))
    assert response.status_code == 404
    assert response.json()["field"] == "id"


def test_a_secret_key_with_a_nul_character_is_refused_by_the_profile_api(client, site):
    response = client.get("/api/v1/profiles/anon-1", HTTP_AUTHORIZATION=basic("sk_\x00"))
    assert response.status_code == 401
    assert response.json()["field"] == "Authorization"


@pytest.mark.parametrize("type_", [[], {}, ["track"]])
def test_a_type_that_is_a_list_or_object_is_a_400_naming_the_field(client, site, type_):
    body = {"batch": [{"type": type_, "anonymousId": "a"}]}
    response = client.post(
        "/v1/batch", json.dumps(body), content_type="application/json",
        HTTP_AUTHORIZATION=basic(site.write_key),
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["field"] == "batch[0].type"


@pytest.mark.parametrize("origin", ["http://[", "https://[::1", "https://[v1.x]/"])
def test_an_origin_urllib_cannot_parse_is_a_403_naming_origin(client, site, origin):
    body = {"batch": [{"type": "track", "event": "Product Viewed", "anonymousId": "a"}]}
    response = client.post(
        "/v1/batch", json.dumps(body), content_type="application/json",
        HTTP_AUTHORIZATION=basic(site.write_key), HTTP_ORIGIN=origin,
    )  # fmt: skip
    assert response.status_code == 403
    assert response.json()["field"] == "Origin"


@pytest.mark.parametrize(
    ("params", "referer"),
    [({}, "http://["), ({"url": "http://[::1"}, ""), ({"url": "http://["}, "https://shop.test/")],
)
def test_the_pixel_refuses_an_unparsable_referer_or_url_without_an_error(
    client, site, params, referer, caplog
):
    headers = {"HTTP_REFERER": referer} if referer else {}
    response = client.get("/v1/p.gif", {"k": site.write_key, **params}, **headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
    assert "pixel: site" in caplog.text and "unparsable" in caplog.text


def test_a_user_hash_with_non_ascii_characters_is_a_400_naming_it(client, site):
    call = {"writeKey": site.write_key, "userId": "u-1",
            "traits": {"email": "ann@example.com", "user_hash": "\x80"}}  # fmt: skip
    response = client.post("/v1/identify", json.dumps(call), content_type="text/plain")
    assert response.status_code == 400
    assert response.json()["field"] == "body.traits.user_hash"
