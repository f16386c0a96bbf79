"""Exports: Meta and Google customer files, plain CSV/JSON; streamed in keyset pages."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth.models import User
from django.http import StreamingHttpResponse

from campaigns.audiences import exports, membership
from campaigns.models import Audience
from tests.audiences.conftest import T0, make_person
from tests.factories import make_site


@pytest.fixture
def audience(db, settings):
    settings.AUDIENCE_PHONE_REGION = "US"
    return Audience.objects.create(site=make_site(), name="Win back", include_hashed_emails=True)


@pytest.fixture
def people(audience):
    site = audience.site
    made = {
        "known": make_person(site, email="John_Smith@gmail.com", phone="(650)555-1212"),
        "email_only": make_person(site, email="b@example.com", anonymous_ids=2),
        "anonymous": make_person(site, email="c@example.com", advertising=False),
        "formula": make_person(site, anonymous_ids=0),
    }
    from tracking.models import Visitor

    Visitor.objects.create(
        site=site, profile=made["formula"], anonymous_id="=HYPERLINK(1)",
        first_seen_at=T0, last_seen_at=T0,
    )  # fmt: skip
    membership.add_members([(audience.id, p.id) for p in made.values()], now=T0)
    return made


def read(stream) -> str:
    return "".join(stream)


def test_the_meta_file_has_metas_headers_and_hashes(audience, people):
    rows = list(csv.reader(io.StringIO(read(exports.meta_csv(audience.id)))))
    assert rows[0] == ["email", "phone"]
    assert rows[1] == [
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
    ]
    assert rows[2] == [membership.hash_email("b@example.com"), ""]
    assert len(rows) == 3  # people without a hashed identifier cannot be matched


def test_the_google_file_has_googles_headers_and_e164_phone_hashes(audience, people):
    rows = list(csv.reader(io.StringIO(read(exports.google_csv(audience.id)))))
    assert rows[0] == ["Email", "Phone"]
    assert rows[1][1] == membership.sha256_hex("+16505551212")
    assert len(rows) == 3


def test_the_plain_csv_has_a_row_per_anonymous_id_and_no_live_formulas(audience, people):
    rows = list(csv.DictReader(io.StringIO(read(exports.plain_csv(audience.id)))))
    ids = [r["anonymous_id"] for r in rows]
    assert len(ids) == 5
    assert "'=HYPERLINK(1)" in ids
    known = people["known"].visitors.get().anonymous_id
    (row,) = [r for r in rows if r["anonymous_id"] == known]
    assert row["email_sha256"] == membership.hash_email("john_smith@gmail.com")


def test_the_json_export_is_one_valid_array_across_pages(audience, people, monkeypatch):
    monkeypatch.setattr(exports, "PAGE", 1)
    data = json.loads(read(exports.plain_json(audience.id)))
    assert [m["id"] for m in data] == sorted(m["id"] for m in data)
    assert len(data) == 4
    assert sorted(len(m["anonymousIds"]) for m in data) == [1, 1, 1, 2]


def test_removed_members_are_not_exported(audience, people):
    membership.remove_profiles([people["known"].id], now=T0, reason="converted")
    rows = list(csv.reader(io.StringIO(read(exports.meta_csv(audience.id)))))
    assert len(rows) == 2


def test_pages_follow_the_member_id_and_take_one_query_each(
    audience, people, monkeypatch, django_assert_num_queries
):
    monkeypatch.setattr(exports, "PAGE", 2)
    with django_assert_num_queries(3):  # 2 + 2 rows, then an empty page ends it
        pages = list(exports.member_pages(audience.id))
    assert [len(p) for p in pages] == [2, 2]


def test_the_admin_streams_an_export_to_staff(audience, people, client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    response = client.get(f"/admin/campaigns/audience/{audience.id}/export/google/")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Disposition"].endswith(f'win-back-{audience.id}-google.csv"')
    assert b"".join(response.streaming_content).startswith(b"Email,Phone\n")
    assert client.get(f"/admin/campaigns/audience/{audience.id}/export/xml/").status_code == 404


def test_the_admin_refuses_exports_to_visitors(audience, client):
    response = client.get(f"/admin/campaigns/audience/{audience.id}/export/meta/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
