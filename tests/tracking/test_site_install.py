"""A site's install page: the snippet, server-side examples, and the live check."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group

from tests.factories import make_site, segment_event
from tests.factories import store_calls as store
from tracking.install import WAITING

pytestmark = pytest.mark.django_db


def install_url(site) -> str:
    return f"/admin/tracking/site/{site.id}/install/"


def check_url(site) -> str:
    return f"/admin/tracking/site/{site.id}/install/last-event/"


@pytest.fixture
def marketer_client(django_user_model, client):
    user = django_user_model.objects.create_user("mia", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    return client


def test_the_site_page_links_to_its_install_page(admin_client):
    site = make_site()
    page = admin_client.get(f"/admin/tracking/site/{site.id}/change/").text
    assert f'href="{install_url(site)}"' in page


def test_the_install_page_shows_the_loader_the_pixel_and_four_examples(admin_client, settings):
    settings.PUBLIC_URL = "https://reengage.example.com"
    site = make_site()
    response = admin_client.get(install_url(site))
    assert response.status_code == 200
    page = response.text
    assert 'id="copy-loader">&lt;script&gt;window.reengage=' in page
    assert f"https://reengage.example.com/v1/p.gif?k={site.write_key}" in page
    for key in ("curl", "python", "node", "php"):
        assert f'id="example-{key}"' in page
        assert f'data-copy="copy-{key}"' in page
    assert page.count("https://reengage.example.com") >= 6  # loader, pixel, four examples
    assert "REENGAGE_SECRET_KEY" in page
    assert 'src="/static/tracking/site_install.js"' in page
    assert "<script>" not in page  # the loader is shown as text, never run here


def test_the_install_page_never_shows_the_secret_key(admin_client):
    site = make_site()
    old = site.secret_key
    site.rotate_secret_key()
    page = admin_client.get(install_url(site)).text
    assert site.secret_key not in page
    assert old not in page
    assert site.secret_key[3:12] not in page  # not even a recognisable part of it


def test_a_site_without_domains_is_told_browsers_are_refused(admin_client):
    site = make_site(domains=[])
    page = admin_client.get(install_url(site)).text
    assert "no domains yet" in page


def test_the_check_waits_until_an_event_arrives(admin_client):
    site = make_site()
    response = admin_client.get(check_url(site))
    assert response.status_code == 200
    assert response.json() == {"received": False, "message": WAITING, "dropped": []}
    assert "no-cache" in response["Cache-Control"]
    assert WAITING in admin_client.get(install_url(site)).text


def test_the_check_names_the_last_browser_event_and_its_page(admin_client):
    site = make_site()
    now = datetime.now(UTC)
    store(site, segment_event(event="Product Viewed"), trusted=False,
          received_at=now - timedelta(minutes=5))  # fmt: skip
    page_view = segment_event("page", name="Cart")
    page_view["context"].update(
        page={"url": "https://shop.test/cart"}, library={"name": "reengage.js"}
    )
    store(site, page_view, trusted=False, received_at=now - timedelta(seconds=20))

    answer = admin_client.get(check_url(site)).json()
    assert answer["received"] is True
    assert (answer["type"], answer["name"]) == ("page", "Cart")
    assert answer["source"] == "https://shop.test/cart (reengage.js)"
    assert answer["ago"].endswith("seconds ago")
    assert answer["message"].endswith(": page “Cart”, from https://shop.test/cart (reengage.js).")


def test_the_check_describes_a_server_side_call_by_its_library(admin_client):
    site = make_site()
    order = segment_event(event="Order Completed", userId="user-42")
    order["context"] = {"library": {"name": "analytics-python"}}
    store(site, order, trusted=True, received_at=datetime.now(UTC))
    answer = admin_client.get(check_url(site)).json()
    assert answer["name"] == "Order Completed"
    assert answer["source"] == "a server or app using analytics-python"


def test_a_backfilled_server_event_is_reported_by_its_time(admin_client):
    site = make_site()
    old = segment_event(event="Order Completed", userId="user-42",
                        timestamp=(datetime.now(UTC) - timedelta(days=40)).isoformat())  # fmt: skip
    store(site, old, trusted=True, received_at=datetime.now(UTC))
    answer = admin_client.get(check_url(site)).json()
    assert answer["received"] is True
    assert answer["message"].startswith("Last event received ")
    assert ":" not in answer["message"]  # what it was is not known, only when


def test_marketers_cannot_open_the_install_page_or_the_check(marketer_client):
    site = make_site()
    assert marketer_client.get(install_url(site)).status_code == 403
    assert marketer_client.get(check_url(site)).status_code == 403


def test_the_check_is_for_staff_only(client):
    site = make_site()
    response = client.get(check_url(site))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_an_unknown_site_is_404(admin_client):
    assert admin_client.get("/admin/tracking/site/999999/install/").status_code == 404
    assert admin_client.get("/admin/tracking/site/999999/install/last-event/").status_code == 404
