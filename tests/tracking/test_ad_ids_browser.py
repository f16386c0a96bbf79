"""The snippet captures Meta's and Google's ids in a real Chromium, only where advertising is allowed.

A customer's page on 127.0.0.1 (with the cookies Meta's and Google's tags would have
set) sends to reengage on localhost; the tests run the flusher and read
tracking.AdIdentifiers.
"""

from __future__ import annotations

import time

import pytest

from tests.browser import batch_posts, wait_until_acknowledged
from tests.factories import make_site
from tests.tracking import test_snippet_browser as snippet
from tracking.models import AdIdentifiers

pytestmark = pytest.mark.browser

# The snippet tests' browser, shop and visit fixtures, and their helpers.
chromium, shop, visit = snippet.chromium, snippet.shop, snippet.visit
GPC_ON, QUIET_MS, open_page, shop_page, stored = (
    snippet.GPC_ON, snippet.QUIET_MS, snippet.open_page, snippet.shop_page, snippet.stored,
)  # fmt: skip

FBP = "fb.1.1596403881668.1116446470"
GA = "GA1.1.1197596843.1673515099"
FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
GCLID = "Cj0KCQiA5rGuBhCnARIsAN11vgQ_w8Zx-3kL"


def with_tag_cookies(visit) -> None:
    """What Meta's pixel and Google's tag leave on the shop's domain."""
    visit.context.add_cookies(
        [
            {"name": "_fbp", "value": FBP, "domain": "127.0.0.1", "path": "/"},
            {"name": "_ga", "value": GA, "domain": "127.0.0.1", "path": "/"},
        ]
    )


def sent_ad_ids(visit) -> list:
    return [e["context"].get("adIds") for p in batch_posts(visit.requests) for e in p["batch"]]


def test_a_landing_with_cookies_and_click_ids_stores_the_ids_and_remembers_the_clicks(
    visit, shop, live_server
):
    site = make_site(domains=["127.0.0.1"])
    with_tag_cookies(visit)
    before_ms = int(time.time() * 1000)
    url = shop_page(shop, site, live_server, path=f"/shoes?fbclid={FBCLID}&gclid={GCLID}")
    page = open_page(visit, url)
    wait_until_acknowledged(page)
    after_ms = int(time.time() * 1000)
    stored(site)

    row = AdIdentifiers.objects.get(site=site)
    assert row.visitor.anonymous_id == visit.cookies()["rg_aid"]["value"]
    assert (row.fbp, row.gclid, row.ga_client_id) == (FBP, GCLID, "1197596843.1673515099")
    # Meta's form for an fbclid: fb.<subdomain index>.<creation time in ms>.<fbclid>
    version, index, created, fbclid = row.fbc.split(".")
    assert (version, index, fbclid) == ("fb", "1", FBCLID)
    assert before_ms <= int(created) <= after_ms
    assert row.user_agent == page.evaluate("navigator.userAgent")
    assert row.client_ip == "127.0.0.0"  # anonymised
    # The snippet saved _fbc as Meta's pixel would (first party, 90 days).
    fbc_cookie = visit.cookies()["_fbc"]
    assert fbc_cookie["value"] == row.fbc
    assert abs(fbc_cookie["expires"] - (time.time() + 90 * 86400)) < 120

    # A later page without the click ids in its URL still carries them.
    AdIdentifiers.objects.all().delete()
    shop.pages["/cart"] = shop.pages["/shoes"]
    later = open_page(visit, shop.url("/cart"))
    wait_until_acknowledged(later)
    stored(site)
    again = AdIdentifiers.objects.get(site=site)
    assert (again.fbp, again.fbc, again.gclid) == (FBP, row.fbc, GCLID)


def test_a_gpc_visitor_sends_no_ids_and_none_are_stored(visit, shop, live_server):
    site = make_site(domains=["127.0.0.1"])
    with_tag_cookies(visit)
    visit.context.add_init_script(GPC_ON)
    page = visit.context.new_page()
    page.goto(shop_page(shop, site, live_server, path=f"/?fbclid={FBCLID}&gclid={GCLID}"))
    page.wait_for_timeout(QUIET_MS)
    assert batch_posts(visit.requests) == []
    assert "_fbc" not in visit.cookies()
    stored(site)
    assert not AdIdentifiers.objects.exists()


def test_on_an_opt_in_site_ids_wait_for_advertising_consent_and_go_when_it_is_withdrawn(
    visit, shop, live_server
):
    site = make_site(domains=["127.0.0.1"], consent_mode="opt-in")
    with_tag_cookies(visit)
    url = shop_page(shop, site, live_server, path=f"/?gclid={GCLID}")
    page = open_page(visit, url)
    page.evaluate("reengage('consent', {analytics: true})")
    wait_until_acknowledged(page)
    assert sent_ad_ids(visit) and not any(sent_ad_ids(visit))
    assert "rg_ad" not in visit.cookies() and "_fbc" not in visit.cookies()
    assert stored(site) and not AdIdentifiers.objects.exists()

    page.evaluate("reengage('consent', {advertising: true}); reengage('track', 'Cart Viewed')")
    wait_until_acknowledged(page)
    stored(site)
    row = AdIdentifiers.objects.get(site=site)
    assert (row.fbp, row.gclid) == (FBP, GCLID)
    assert "rg_ad" in visit.cookies()

    page.evaluate("reengage('consent', {advertising: false}); reengage('track', 'Cart Viewed')")
    wait_until_acknowledged(page)
    assert sent_ad_ids(visit)[-1] is None
    stored(site)
    assert not AdIdentifiers.objects.exists()
    assert "rg_ad" not in visit.cookies()


def test_a_malformed_fbclid_writes_no_fbc_cookie_and_the_other_ids_still_go(
    visit, shop, live_server
):
    site = make_site(domains=["127.0.0.1"])
    with_tag_cookies(visit)
    page = open_page(visit, shop_page(shop, site, live_server, path="/?fbclid=a%3Bb%20c"))
    wait_until_acknowledged(page)
    assert "_fbc" not in visit.cookies()
    stored(site)
    row = AdIdentifiers.objects.get(site=site)
    assert (row.fbp, row.fbc) == (FBP, "")
