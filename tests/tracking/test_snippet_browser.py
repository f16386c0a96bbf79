"""The snippet in a real Chromium: a customer's page on 127.0.0.1 sends to reengage on localhost.

Events go through the real ingest API into Redis; the tests run the flusher
themselves and read PostgreSQL.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.browser import (
    SiteServer,
    artifacts_on_failure,
    batch_posts,
    launch_chromium,
    outbox,
    page_html,
    wait_until_acknowledged,
    wait_until_released,
)
from tests.factories import make_site
from tracking.flush import flush_until_empty
from tracking.keys import clear_key_cache
from tracking.models import Event, Profile
from tracking.snippet import loader_html

pytestmark = pytest.mark.browser

GPC_ON = "Object.defineProperty(navigator, 'globalPrivacyControl', {value: true})"
# Longer than the snippet's 1 s batching delay: what was not sent by then never will be.
QUIET_MS = 1500


@pytest.fixture(scope="module")
def chromium():
    with launch_chromium() as browser:
        # Ingest drops bots, and "HeadlessChrome" is one: browse as a visitor would.
        page = browser.new_page()
        user_agent = page.evaluate("navigator.userAgent").replace("HeadlessChrome", "Chrome")
        page.close()
        yield browser, user_agent


@pytest.fixture(scope="module")
def shop():
    with SiteServer() as server:
        yield server


class Visit:
    """One browser profile (context): its console and its requests to reengage's API."""

    def __init__(self, context, console: list[str]) -> None:
        self.context = context
        self.console = console
        self.requests: list = []
        context.on("request", lambda r: "/v1/" in r.url and self.requests.append(r))

    def cookies(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.context.cookies()}

    def storage(self, page) -> dict[str, str]:
        return page.evaluate(
            "Object.fromEntries(Object.entries(localStorage).filter(([k]) => k.startsWith('rg_')))"
        )


@pytest.fixture
def visit(chromium, request, live_server, transactional_db, redis_client):
    clear_key_cache()
    browser, user_agent = chromium
    context = browser.new_context(user_agent=user_agent)
    with artifacts_on_failure(request, context) as console:
        yield Visit(context, console)
        # Leave nothing to beacon after the test's data is gone.
        for page in context.pages:
            if page.url.startswith("http"):
                page.evaluate("localStorage.clear()")
    context.close()


def shop_page(shop, site, live_server, script: str = "", path: str = "/") -> str:
    shop.pages[path.split("?")[0]] = page_html(loader_html(site, live_server.url), script)
    return shop.url(path)


def open_page(visit: Visit, url: str):
    """Open `url` and wait until the snippet has its site's settings."""
    page = visit.context.new_page()
    with page.expect_response("**/v1/settings/**"):
        page.goto(url)
    return page


def stored(site) -> list[Event]:
    flush_until_empty(budget_seconds=10)
    return list(Event.objects.filter(site=site).order_by("timestamp"))


def eventually_stored(site, count: int, timeout: float = 10) -> list[Event]:
    """For fire-and-forget sends (beacons), which the page cannot see acknowledged."""
    deadline = time.monotonic() + timeout
    while len(events := stored(site)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return events


def test_it_keeps_the_visitor_in_a_first_party_cookie_and_delivers_page_track_identify(
    visit, shop, live_server
):
    site = make_site(domains=["127.0.0.1"])
    email = "Ada@Example.com"
    url = shop_page(
        shop, site, live_server, path="/shoes?utm_source=news&utm_campaign=spring",
        script=f"reengage('track', 'Product Added', {{sku: 'S-1', price: 12.5}});"
        f"reengage('identify', 'u-42', {{email: '{email}', user_hash: '{site.user_hash(email)}'}});",
    )  # fmt: skip
    page = open_page(visit, url)
    wait_until_acknowledged(page)

    cookies = visit.cookies()
    assert set(cookies) == {"rg_aid", "rg_uid"}
    aid = cookies["rg_aid"]
    # First party: on the shop's own host, none on reengage's (localhost).
    assert aid["domain"] == "127.0.0.1"
    assert aid["path"] == "/"
    assert aid["sameSite"] == "Lax"
    assert aid["secure"] is False  # plain http here; see the https test
    assert abs(aid["expires"] - (time.time() + site.cookie_days * 86400)) < 120
    assert cookies["rg_uid"]["value"] == "u-42"

    posts = batch_posts(visit.requests)
    assert posts and all(p["writeKey"] == site.write_key and p["sentAt"] for p in posts)
    batch_requests = [r for r in visit.requests if r.url.endswith("/v1/batch")]
    assert all(r.headers["content-type"].startswith("text/plain") for r in batch_requests)

    events = {e.type: e for e in stored(site)}
    assert set(events) == {"page", "track", "identify"}
    assert {e.anonymous_id for e in events.values()} == {aid["value"]}
    page_event = events["page"]
    assert page_event.properties["path"] == "/shoes"
    assert page_event.properties["title"] == "Shoes"
    context = page_event.context
    assert context["page"]["url"] == url
    assert context["page"]["search"] == "?utm_source=news&utm_campaign=spring"
    assert context["campaign"] == {"source": "news", "name": "spring"}
    assert context["library"]["name"] == "reengage.js"
    assert context["locale"] and context["timezone"]
    assert context["screen"]["width"] > 0
    assert events["track"].name == "Product Added"
    assert events["track"].properties == {"sku": "S-1", "price": 12.5}
    assert events["identify"].user_id == "u-42"
    profile = Profile.objects.get(site=site, user_id="u-42")
    assert profile.email.lower() == email.lower()
    assert profile.email_verified is True


def test_it_shares_the_cookie_across_subdomains_and_marks_it_secure_on_https(
    chromium, request, tmp_path
):
    """Widest registrable domain, Secure on https. The API is faked: this is about cookies."""
    browser, user_agent = chromium
    context = browser.new_context(ignore_https_errors=True, user_agent=user_agent)
    script = (Path(settings.BASE_DIR) / "static/reengage/reengage.js").read_bytes()
    with SiteServer(tls_dir=tmp_path) as secure_shop, artifacts_on_failure(request, context):
        api = secure_shop.url("", host="api.shop.test")
        secure_shop.files["/reengage.js"] = (script, "text/javascript")
        secure_shop.pages["/"] = page_html(
            f"<script src='/reengage.js'></script><script>reengage('init', 'wk_x', {{api: '{api}'}});"
            "reengage('page');</script>"
        )
        context.route(
            "**/v1/settings/**",
            lambda route: route.fulfill(json={"consentMode": "none", "cookieDays": 30}),
        )
        context.route("**/v1/batch", lambda route: route.fulfill(json={"success": True}))
        page = context.new_page()
        page.goto(secure_shop.url("/", host="www.shop.test"))
        page.wait_for_function("document.cookie.includes('rg_aid=')")
        cookies = {c["name"]: c for c in context.cookies()}
        context.close()
    assert set(cookies) == {"rg_aid"}  # the domain probe left nothing behind
    assert cookies["rg_aid"]["domain"] == ".shop.test"  # not ".test": a public suffix
    assert cookies["rg_aid"]["secure"] is True
    assert cookies["rg_aid"]["sameSite"] == "Lax"
    assert abs(cookies["rg_aid"]["expires"] - (time.time() + 30 * 86400)) < 120


def test_opt_in_sends_nothing_and_sets_no_cookie_until_the_visitor_consents(
    visit, shop, live_server
):
    site = make_site(domains=["127.0.0.1"], consent_mode="opt-in")
    page = open_page(visit, shop_page(shop, site, live_server, "reengage('track', 'Cart Viewed')"))
    page.wait_for_timeout(QUIET_MS)
    assert batch_posts(visit.requests) == []
    assert visit.cookies() == {}
    assert visit.storage(page) == {}  # held in memory only

    page.evaluate("reengage('consent', {analytics: true, email: true, advertising: false})")
    wait_until_acknowledged(page)
    assert set(visit.cookies()) == {"rg_aid", "rg_cst"}
    events = stored(site)
    assert sorted(e.type for e in events) == ["page", "track"]
    consent = {"analytics": True, "email": True, "advertising": False}
    assert all(e.context["consent"] == consent for e in events)

    # The next page remembers the consent; the site need not call it again.
    second = open_page(visit, shop.url("/"))  # the same page again: page + track
    wait_until_acknowledged(second)
    events = stored(site)
    assert len(events) == 4
    assert len({e.anonymous_id for e in events}) == 1


def test_opt_in_drops_held_calls_when_the_visitor_declines_and_remembers_it(
    visit, shop, live_server
):
    site = make_site(domains=["127.0.0.1"], consent_mode="opt-in")
    page = open_page(visit, shop_page(shop, site, live_server, "reengage('track', 'Cart Viewed')"))
    page.evaluate("reengage('consent', {analytics: false})")
    page.wait_for_timeout(QUIET_MS)
    assert visit.cookies() == {}
    assert visit.storage(page) == {
        "rg_cst": json.dumps({"analytics": False}, separators=(",", ":"))
    }

    again = open_page(visit, shop.url("/"))
    again.wait_for_timeout(QUIET_MS)
    assert batch_posts(visit.requests) == []
    assert visit.cookies() == {}
    assert stored(site) == []

    # A later change of mind sends only what happens after the consent.
    again.evaluate("reengage('consent', {analytics: true}); reengage('track', 'Consented')")
    wait_until_acknowledged(again)
    assert [(e.type, e.name) for e in stored(site)] == [("track", "Consented")]


def test_opt_out_tracks_until_the_visitor_declines_which_clears_cookie_and_queue(
    visit, shop, live_server
):
    site = make_site(domains=["127.0.0.1"], consent_mode="opt-out")
    page = open_page(visit, shop_page(shop, site, live_server))
    wait_until_acknowledged(page)
    assert "rg_aid" in visit.cookies()
    sent = len(batch_posts(visit.requests))

    page.evaluate("reengage('track', 'Product Viewed'); reengage('consent', {analytics: false})")
    page.evaluate("reengage('track', 'Product Added')")
    page.wait_for_timeout(QUIET_MS)
    assert visit.cookies() == {}
    assert visit.storage(page) == {
        "rg_cst": json.dumps({"analytics": False}, separators=(",", ":"))
    }
    assert len(batch_posts(visit.requests)) == sent
    assert [e.type for e in stored(site)] == ["page"]


def test_gpc_sets_no_cookie_and_sends_nothing_not_even_a_settings_request(visit, shop, live_server):
    site = make_site(domains=["127.0.0.1"])
    visit.context.add_init_script(GPC_ON)
    # A cookie from before the visitor turned GPC on is removed.
    visit.context.add_cookies([{"name": "rg_aid", "value": "old", "url": shop.url()}])
    page = visit.context.new_page()
    page.goto(shop_page(shop, site, live_server, "reengage('track', 'Product Viewed')"))
    assert page.evaluate("reengage.version")  # the snippet did load and run the calls
    page.evaluate("reengage('consent', {analytics: true})")
    page.wait_for_timeout(QUIET_MS)
    page.goto("about:blank")  # page hide sends no beacon either
    assert visit.requests == []
    assert visit.cookies() == {}
    assert stored(site) == []


def test_a_server_that_answers_503_then_recovers_ends_with_one_copy_of_each_event(
    visit, shop, live_server
):
    site = make_site(domains=["127.0.0.1"])
    attempts: list[float] = []

    def flaky(route, request):
        attempts.append(time.monotonic())
        headers = {
            "Access-Control-Allow-Origin": request.headers["origin"],
            "Access-Control-Expose-Headers": "Retry-After",
            "Retry-After": "2",
        }
        busy = {"status": 503, "headers": headers, "json": {"error": "storage is unavailable"}}
        if len(attempts) == 1:
            route.fulfill(**busy)  # never reached the server
        elif len(attempts) == 2:
            route.fetch()  # stored, but the acknowledgement is lost
            route.fulfill(**busy)
        else:
            route.continue_()

    page = visit.context.new_page()
    page.route("**/v1/batch", flaky)
    with page.expect_response("**/v1/settings/**"):
        page.goto(
            shop_page(shop, site, live_server, "reengage('track', 'A'); reengage('track', 'B')")
        )
    wait_until_released(page)
    queued = {e["messageId"] for e in outbox(page)}
    wait_until_acknowledged(page)

    assert len(attempts) >= 3
    assert attempts[1] - attempts[0] >= 2  # Retry-After was honoured
    assert all({e["messageId"] for e in p["batch"]} == queued for p in batch_posts(visit.requests))
    events = stored(site)
    assert sorted(e.message_id for e in events) == sorted(queued)
    assert len(queued) == 3


def test_events_wait_in_local_storage_while_the_server_is_unreachable(visit, shop, live_server):
    site = make_site(domains=["127.0.0.1"])
    page = visit.context.new_page()
    page.route("**/v1/batch", lambda route: route.abort("connectionrefused"))
    with page.expect_response("**/v1/settings/**"):
        page.goto(shop_page(shop, site, live_server))
    page.wait_for_function("() => JSON.parse(localStorage.getItem('rg_q') || '[]').length")
    page.wait_for_timeout(QUIET_MS)  # a failed attempt keeps the event
    first = outbox(page)
    assert [e["type"] for e in first] == ["page"]
    page.close()

    second = open_page(visit, shop.url("/"))  # the API answers again
    wait_until_acknowledged(second)
    events = stored(site)
    assert first[0]["messageId"] in {e.message_id for e in events}
    assert len(events) == 2


def test_page_hide_hands_the_queued_events_to_send_beacon(visit, shop, live_server):
    site = make_site(domains=["127.0.0.1"])
    page = open_page(visit, shop_page(shop, site, live_server))
    wait_until_released(page)
    page.evaluate("reengage('track', 'Checkout Started')")
    queued = {e["messageId"] for e in outbox(page)}
    page.goto("about:blank")  # leave before the 1 s batch is due: no page sends it again

    events = eventually_stored(site, 2)
    assert {e.message_id for e in events} == queued
    # No fetch carried them (Playwright does not report beacons at all).
    sends = [r for r in visit.requests if r.url.endswith("/v1/batch")]
    assert [r for r in sends if r.resource_type != "ping"] == []


def test_a_call_the_server_refuses_is_dropped_with_a_warning_and_the_rest_resent(
    visit, shop, live_server
):
    site = make_site(domains=["127.0.0.1"])
    page = open_page(
        visit,
        shop_page(
            shop, site, live_server,
            "reengage('identify', 'u-1', {email: 'a@example.com', user_hash: 'f00'});"
            "reengage('track', 'Cart Viewed')",
        ),
    )  # fmt: skip
    wait_until_acknowledged(page)  # nothing left to retry
    page.wait_for_timeout(QUIET_MS)
    posts = batch_posts(visit.requests)
    assert [[e["type"] for e in p["batch"]] for p in posts] == [
        ["page", "identify", "track"],
        ["page", "track"],
    ]
    assert any(
        "server refused 1 event(s)" in line
        and "400" in line
        and "batch[1].context.user_hash" in line
        for line in visit.console
    )
    assert sorted(e.type for e in stored(site)) == ["page", "track"]


def test_a_single_page_app_view_has_the_previous_view_as_its_referrer(visit, shop, live_server):
    site = make_site(domains=["127.0.0.1"])
    first = shop_page(shop, site, live_server, path="/list")
    page = open_page(visit, first)
    wait_until_released(page)
    page.evaluate(
        "history.pushState({}, '', '/item?utm_medium=email');"
        "reengage('page'); reengage('track', 'Product Viewed')"
    )
    wait_until_acknowledged(page)
    events = {(e.type, e.properties.get("path", "")): e for e in stored(site)}
    assert events["page", "/list"].properties["referrer"] == ""
    assert events["page", "/item"].properties["referrer"] == first
    assert events["track", ""].context["page"]["referrer"] == first
    assert events["track", ""].context["campaign"] == {"medium": "email"}
