"""Per-audience reach: how many current members Meta and Google can match, and why."""

from __future__ import annotations

import pytest

from campaigns import audiences
from campaigns.audiences import membership
from campaigns.models import Audience
from tests.audiences.conftest import T0, make_person
from tests.audiences.test_admin import admin_client  # noqa: F401 (a fixture)
from tests.audiences.test_api import basic
from tests.factories import make_site
from tracking.keys import clear_key_cache
from tracking.models import AdIdentifiers

pytestmark = pytest.mark.django_db

FBP = "fb.1.1596403881668.1116446470"
FBC = "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
GCLID = "Cj0KCQiA5rGuBhCnARIsAN11vgQ_w8Zx-3kL"
GA_CLIENT_ID = "1197596843.1673515099"


def give_ids(person, browser: int = 0, **ids) -> None:
    visitor = person.visitors.order_by("id")[browser]
    AdIdentifiers.objects.create(visitor=visitor, site=person.site, updated_at=T0, **ids)


@pytest.fixture
def audience():
    site = make_site()
    audience = Audience.objects.create(site=site, name="Cart", include_hashed_emails=True)
    meta_only = make_person(site)
    give_ids(meta_only, fbp=FBP)
    # Two browsers, one with each platform's id: counted once per platform.
    both = make_person(site, anonymous_ids=2)
    give_ids(both, 0, fbc=FBC)
    give_ids(both, 1, ga_client_id=GA_CLIENT_ID, gclid=GCLID)
    google_click = make_person(site)
    give_ids(google_click, wbraid="CjkKCQ-x_1")
    emailed = make_person(site, email="ann@example.com")
    nothing = make_person(site)
    left = make_person(site)
    give_ids(left, fbp=FBP)
    people = [meta_only, both, google_click, emailed, nothing, left]
    membership.add_members([(audience.id, p.id) for p in people], now=T0)
    membership.remove_profiles([left.id], now=T0, reason="converted")
    return audience


def test_reach_counts_current_members_each_platform_can_match(audience, django_assert_num_queries):
    with django_assert_num_queries(1):
        reach = audiences.audience_reach(audience.id)
    assert reach == audiences.Reach(members=5, meta=2, google=2, hashed_email=1)


def test_the_sentence_says_why_an_audience_is_small_on_the_platforms(audience):
    text = audiences.audience_reach(audience.id).sentence()
    assert text.startswith("Of 5 current members, Meta can recognise 2")
    assert "Google 2" in text and "1 have a hashed email" in text
    assert "refuse advertising" in text  # 3 of 5 are beyond both platforms' cookies
    empty = Audience.objects.create(site=audience.site, name="Empty")
    assert "No current members" in audiences.audience_reach(empty.id).sentence()


def test_the_audience_page_shows_the_reach(admin_client, audience):  # noqa: F811
    page = admin_client.get(f"/admin/campaigns/audience/{audience.id}/change/").content.decode()
    assert "Of 5 current members, Meta can recognise 2" in page
    assert "Google can match (Analytics cookie or click id)" in page


def test_no_public_audience_endpoint_returns_the_ids(client, audience):
    clear_key_cache()
    auth = basic(audience.site.secret_key)
    bodies = [
        client.get(f"/api/v1/audiences/{audience.id}/{what}", **auth).content.decode()
        for what in ("members", "changes")
    ]
    bodies.append(
        client.get(f"/api/v1/audiences/{audience.id}/export", {"format": "json"}, **auth)
        .getvalue()
        .decode()
    )
    member = audience.members.filter(removed_at=None).first()
    anonymous_id = member.profile.visitors.first().anonymous_id
    bodies.append(
        client.get(f"/v1/audiences/{audience.site.write_key}/{anonymous_id}").content.decode()
    )
    assert all(bodies)
    for body in bodies:
        for value in (FBP, FBC, GCLID, GA_CLIENT_ID):
            assert value not in body
