"""The pull API: members and changes, with the secret key or a destination's token."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.audiences import membership
from campaigns.models import Audience, AudienceChange, Destination
from tests.audiences.conftest import T0, make_person
from tests.factories import make_site
from tracking.keys import clear_key_cache


@pytest.fixture(autouse=True)
def fresh_keys():
    clear_key_cache()
    yield
    clear_key_cache()


@pytest.fixture
def audience(db):
    audience = Audience.objects.create(site=make_site(), name="A", include_hashed_emails=True)
    people = [make_person(audience.site, email=f"p{i}@example.com") for i in range(5)]
    membership.add_members([(audience.id, p.id) for p in people], now=T0)
    return audience


def basic(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_members_page_by_cursor_until_the_end(client, audience):
    auth = basic(audience.site.secret_key)
    url = f"/api/v1/audiences/{audience.id}/members"
    seen, cursor = [], ""
    for _ in range(5):
        body = client.get(url, {"limit": 2, "cursor": cursor}, **auth).json()
        seen += [m["id"] for m in body["data"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    first = client.get(url, {"limit": 1}, **auth).json()["data"][0]
    assert first["emailSha256"] == membership.hash_email("p0@example.com")
    assert len(first["anonymousIds"]) == 1


def test_changes_resume_from_a_cursor(client, audience):
    auth = basic(audience.site.secret_key)
    url = f"/api/v1/audiences/{audience.id}/changes"
    body = client.get(url, {"limit": 3}, **auth).json()
    assert [c["action"] for c in body["data"]] == ["add"] * 3
    assert body["hasMore"] is True
    person = audience.members.order_by("id").first().profile
    membership.remove_profiles([person.id], now=T0, reason="converted")
    rest = client.get(url, {"cursor": body["nextCursor"]}, **auth).json()
    assert [(c["action"], c["reason"]) for c in rest["data"]] == [("add", "campaign")] * 2 + [
        ("remove", "converted")
    ]
    assert rest["hasMore"] is False
    empty = client.get(url, {"cursor": rest["nextCursor"]}, **auth).json()
    assert (empty["data"], empty["nextCursor"]) == ([], rest["nextCursor"])
    ids = [c["id"] for c in body["data"] + rest["data"]]
    assert ids == list(AudienceChange.objects.order_by("id").values_list("id", flat=True))


def test_a_destination_token_reads_its_own_audience_only(client, audience):
    destination = Destination.objects.create(audience=audience, name="sync")
    token = destination.issue_token(now=datetime.now(UTC))
    assert destination.token_hash != token and token not in destination.token_hash
    ok = client.get(f"/api/v1/audiences/{audience.id}/members", **bearer(token))
    assert ok.status_code == 200
    other = Audience.objects.create(site=audience.site, name="B")
    refused = client.get(f"/api/v1/audiences/{other.id}/changes", **bearer(token))
    assert refused.status_code == 403
    assert refused.json()["field"] == "Authorization"


def test_a_token_reissued_without_overlap_ends_the_old_one_at_once(client, audience):
    destination = Destination.objects.create(audience=audience, name="sync")
    old = destination.issue_token(now=datetime.now(UTC))
    destination.issue_token(now=datetime.now(UTC), overlap=timedelta(0))
    response = client.get(f"/api/v1/audiences/{audience.id}/members", **bearer(old))
    assert response.status_code == 401


def test_the_write_key_and_no_key_are_refused(client, audience):
    url = f"/api/v1/audiences/{audience.id}/members"
    assert client.get(url, **basic(audience.site.write_key)).status_code == 403
    response = client.get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")


def test_another_sites_audience_is_not_found(client, audience):
    other_site = make_site(name="Other")
    response = client.get(
        f"/api/v1/audiences/{audience.id}/members", **basic(other_site.secret_key)
    )
    assert response.status_code == 404
    assert response.json()["field"] == "id"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "²"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5000"}, "limit"),
    ],
)
def test_bad_paging_gets_a_400_naming_the_parameter(client, audience, query, field):
    response = client.get(
        f"/api/v1/audiences/{audience.id}/changes", query, **basic(audience.site.secret_key)
    )
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_the_api_streams_exports_and_names_the_formats_on_a_typo(client, audience):
    url = f"/api/v1/audiences/{audience.id}/export"
    auth = basic(audience.site.secret_key)
    response = client.get(url, {"format": "json"}, **auth)
    assert response.status_code == 200 and response.streaming
    assert len(__import__("json").loads(b"".join(response.streaming_content))) == 5
    typo = client.get(url, {"format": "xlsx"}, **auth)
    assert typo.status_code == 400
    assert "meta, google, csv, json" in typo.json()["error"]
