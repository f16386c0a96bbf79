"""`GET /api/v1/profiles/<id>` with the secret key."""

from __future__ import annotations

import base64
import json

import pytest

from tests.factories import make_site, segment_event
from tracking import flush

pytestmark = pytest.mark.django_db


def auth(key):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
def site(client, redis_client):
    site = make_site()
    batch = {"batch": [
        segment_event(anonymousId="anon-1", event="Product Added", properties={"price": 5}),
        segment_event("identify", anonymousId="anon-1", userId="u-1",
                      traits={"email": "ann@example.com", "name": "Ann"}),
    ]}  # fmt: skip
    client.post("/v1/batch", json.dumps(batch), content_type="application/json",
                **auth(site.write_key))  # fmt: skip
    flush.flush_once()
    return site


@pytest.mark.parametrize("identifier", ["anon-1", "u-1"])
def test_it_finds_a_profile_by_anonymous_id_or_user_id(client, site, identifier):
    response = client.get(f"/api/v1/profiles/{identifier}", **auth(site.secret_key))
    assert response.status_code == 200
    body = response.json()
    assert body["userId"] == "u-1"
    assert body["anonymousIds"] == ["anon-1"]
    assert body["email"] == "ann@example.com"
    assert body["emailVerified"] is False
    assert body["traits"] == {"email": "ann@example.com", "name": "Ann"}
    assert [e["type"] for e in body["recentEvents"]] == ["identify", "track"]


def test_it_answers_404_for_an_unknown_visitor(client, site):
    response = client.get("/api/v1/profiles/nobody", **auth(site.secret_key))
    assert response.status_code == 404
    assert response.json()["field"] == "id"


def test_the_write_key_is_refused(client, site):
    response = client.get("/api/v1/profiles/anon-1", **auth(site.write_key))
    assert response.status_code == 403


def test_no_key_is_401(client, site):
    response = client.get("/api/v1/profiles/anon-1")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")


def test_another_sites_secret_key_sees_nothing(client, site):
    other = make_site(name="Other")
    assert client.get("/api/v1/profiles/anon-1", **auth(other.secret_key)).status_code == 404
