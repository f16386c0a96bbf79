"""The tracking admin pages render for a superuser."""

import pytest

from tests.factories import make_site, segment_event
from tracking.storage import store_events

pytestmark = pytest.mark.django_db


def test_the_site_pages_render_and_hide_the_full_secret_key(admin_client):
    site = make_site()
    response = admin_client.get(f"/admin/tracking/site/{site.id}/change/")
    assert response.status_code == 200
    assert site.write_key in response.content.decode()
    assert site.secret_key not in response.content.decode()
    assert admin_client.get("/admin/tracking/site/").status_code == 200


def test_profile_and_event_lists_render(admin_client):
    from datetime import UTC, datetime

    from tracking.ingest import SiteKey, parse_batch

    site = make_site()
    key = SiteKey(site.id, True, (), True, 395, (site.secret_key,), 10**6)
    events, _ = parse_batch({"batch": [segment_event()]}, key=key, received_at=datetime.now(UTC),
                            client_ip="", single_type=None)  # fmt: skip
    store_events(events, now=datetime.now(UTC))
    from tracking.models import Profile

    assert admin_client.get("/admin/tracking/profile/").status_code == 200
    profile = Profile.objects.get(site=site)
    page = admin_client.get(f"/admin/tracking/profile/{profile.id}/change/").content.decode()
    timeline = f"/admin/tracking/profile/{profile.id}/timeline/"
    assert timeline in page  # the events are on the visitor's timeline
    assert "Product Viewed" in admin_client.get(timeline).content.decode()
