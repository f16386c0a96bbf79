"""The install page's check says what arrived but was not stored, and why (bot, origin)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_site, segment_event
from tests.factories import store_calls as store
from tracking import flush
from tracking.models import Event

pytestmark = pytest.mark.django_db

HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.6778.33 Safari/537.36"
)
ORDINARY = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def check(admin_client, site) -> dict:
    return admin_client.get(f"/admin/tracking/site/{site.id}/install/last-event/").json()


def send(client, site, agent: str, **headers):
    call = segment_event(context={"userAgent": agent, "library": {"name": "reengage.js"}})
    auth = "Basic " + base64.b64encode(f"{site.write_key}:".encode()).decode()
    return client.post("/v1/batch", json.dumps({"batch": [call]}),
                       content_type="application/json", HTTP_AUTHORIZATION=auth, **headers)  # fmt: skip


@pytest.fixture
def site(redis_client):
    return make_site(domains=["shop.test"])


def test_a_headless_browsers_event_is_reported_as_received_and_dropped_as_a_bot(
    client, admin_client, site
):
    assert send(client, site, HEADLESS).status_code == 200
    flush.flush_once()
    assert not Event.objects.filter(site=site).exists()

    answer = check(admin_client, site)
    assert answer["received"] is False
    assert answer["message"].startswith("No events stored yet. Received just now, dropped as a bot")
    assert f"(user agent “{HEADLESS}”)" in answer["message"]
    assert [note["reason"] for note in answer["dropped"]] == ["bot"]


def test_the_install_page_itself_names_the_bot_drop(client, admin_client, site):
    send(client, site, HEADLESS)
    page = admin_client.get(f"/admin/tracking/site/{site.id}/install/").text
    assert "dropped as a bot (user agent “Mozilla/5.0" in page
    assert "HeadlessChrome/131" in page


def test_a_page_on_a_foreign_origin_is_reported_as_refused(client, admin_client, site):
    response = send(client, site, ORDINARY, HTTP_ORIGIN="https://staging.shop.example")
    assert response.status_code == 403
    message = check(admin_client, site)["message"]
    assert "Refused just now: a page on https://staging.shop.example sent events" in message


def test_a_drop_before_the_last_stored_event_is_not_repeated(client, admin_client, site):
    send(client, site, HEADLESS)
    later = datetime.now(UTC) + timedelta(seconds=5)
    store(site, segment_event(event="Product Viewed"), trusted=False, received_at=later)
    answer = check(admin_client, site)
    assert answer["received"] is True and answer["dropped"] == []
    assert "bot" not in answer["message"]


def test_an_ordinary_browsers_event_is_stored_and_nothing_is_reported_dropped(
    client, admin_client, site
):
    send(client, site, ORDINARY)
    flush.flush_once()
    answer = check(admin_client, site)
    assert answer["received"] is True and answer["dropped"] == []
