"""End to end on the demo store, in a real Chromium: an anonymous visitor with Meta's and
Google's cookies abandons a cart and reaches the Meta pixel and GA4 (their stand-ins) as
a join; after an order, a leave follows. A GPC visitor and a visitor of an opt-in site who
gave no consent reach neither."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db.models import F

from campaigns.engine.tick import tick
from campaigns.models import Audience, Enrollment, PlatformDestination
from reengage.management.commands.seed_demo import DEMO_DELAYS
from tests.audiences.conftest import GA4_SECRET, META_TOKEN, deliver
from tests.audiences.platform_standins import GA4StandIn, MetaStandIn
from tests.browser import launch_chromium
from tracking.flush import flush_until_empty
from tracking.keys import clear_key_cache
from tracking.models import Site

pytestmark = pytest.mark.browser

PIXEL = "1000000000000001"  # the demo's destinations (seed_demo), given credentials here
MEASUREMENT = "G-DEMO000001"


@pytest.fixture
def platforms(live_server, transactional_db, redis_client, settings):
    settings.PUBLIC_URL = live_server.url
    clear_key_cache()
    call_command("seed_demo", verbosity=0)
    meta = MetaStandIn(token=META_TOKEN)
    ga4 = GA4StandIn(measurement_id=MEASUREMENT, api_secret=GA4_SECRET)
    settings.META_GRAPH_URL, settings.GA4_MP_URL = meta.url, ga4.url
    for destination in PlatformDestination.objects.all():
        destination.credential = META_TOKEN if destination.kind == "meta_capi" else GA4_SECRET
        destination.save()
    yield live_server.url, meta, ga4
    meta.close()
    ga4.close()


def visit(base: str, *, gpc: bool = False, sends: bool = True) -> dict[str, str]:
    """One visitor: a product, Add to cart, then gone. Their cookies. `sends`: whether
    the snippet may send anything at all (not on an opt-in site before consent)."""
    with launch_chromium() as browser:
        probe = browser.new_page()
        user_agent = probe.evaluate("navigator.userAgent").replace("HeadlessChrome", "Chrome")
        probe.close()
        context = browser.new_context(user_agent=user_agent)
        if gpc:
            context.add_init_script(
                "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})"
            )
        page = context.new_page()
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        page.goto(f"{base}/demo/product/lamp/")
        if sends:
            with page.expect_response(lambda r: "/v1/" in r.url and r.request.method == "POST"):
                page.click("#add-to-cart")
        else:
            page.click("#add-to-cart")
            page.wait_for_timeout(2000)  # the snippet sends within a second when it may
            assert posts == []
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        context.close()
    return cookies


def first_step_due() -> None:
    """The engine's first step of the demo campaign comes due (its delay, DEMO_DELAYS[0]
    minutes after the cart, has passed): the enrollment's times move back instead of the
    clock moving forward, since Meta refuses events from the future."""
    for enrollment in Enrollment.objects.all():
        assert enrollment.due_at - enrollment.enrolled_at <= timedelta(minutes=DEMO_DELAYS[0])
    delay = timedelta(minutes=DEMO_DELAYS[0], seconds=1)
    Enrollment.objects.update(due_at=F("due_at") - delay, enrolled_at=F("enrolled_at") - delay)
    tick(now=datetime.now(UTC))


def test_an_anonymous_abandoner_reaches_meta_and_ga4_with_their_own_cookies(platforms):
    base, meta, ga4 = platforms
    cookies = visit(base)
    flush_until_empty(budget_seconds=10)
    first_step_due()
    deliver(datetime.now(UTC))  # one run of the periodic delivery

    assert meta.violations == [] and ga4.violations == []
    (join,) = meta.events[PIXEL]
    assert join["event_name"] == "reengage_join_demo_cart_abandoners"
    assert join["user_data"]["fbp"] == cookies["_fbp"]
    [(client_id, ga_join)] = ga4.events
    assert client_id == cookies["_ga"].removeprefix("GA1.1.")
    assert ga_join["name"].startswith("reengage_join")


def test_an_order_in_the_same_browser_sends_the_leave_events(platforms):
    base, meta, ga4 = platforms
    with launch_chromium() as browser:
        probe = browser.new_page()
        user_agent = probe.evaluate("navigator.userAgent").replace("HeadlessChrome", "Chrome")
        probe.close()
        context = browser.new_context(user_agent=user_agent)
        page = context.new_page()
        page.goto(f"{base}/demo/product/lamp/")
        with page.expect_response(lambda r: "/v1/" in r.url and r.request.method == "POST"):
            page.click("#add-to-cart")
        flush_until_empty(budget_seconds=10)
        first_step_due()
        deliver(datetime.now(UTC))
        assert [e["event_name"] for e in meta.events[PIXEL]] == [
            "reengage_join_demo_cart_abandoners"
        ]
        page.goto(f"{base}/demo/checkout/")
        with page.expect_response(
            lambda r: "/v1/" in r.url and "Order Completed" in (r.request.post_data or "")
        ):
            page.click("#place-order")
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        context.close()
    flush_until_empty(budget_seconds=10)
    deliver(datetime.now(UTC))

    assert meta.violations == [] and ga4.violations == []
    names = [e["event_name"] for e in meta.events[PIXEL]]
    assert names == ["reengage_join_demo_cart_abandoners", "reengage_leave_demo_cart_abandoners"]
    assert {e["user_data"]["fbp"] for e in meta.events[PIXEL]} == {cookies["_fbp"]}
    assert [event["name"].split("_")[1] for _, event in ga4.events] == ["join", "leave"]


def test_a_gpc_visitor_and_an_opt_in_visitor_without_consent_reach_neither(platforms):
    base, meta, ga4 = platforms
    visit(base, gpc=True, sends=False)  # the snippet sends nothing under GPC
    site = Site.objects.get()
    site.consent_mode = "opt-in"
    site.save()
    clear_key_cache()
    visit(base, sends=False)  # no consent given: the snippet sends nothing
    flush_until_empty(budget_seconds=10)
    first_step_due()
    deliver(datetime.now(UTC))

    assert meta.request_count == 0 and ga4.request_count == 0
    assert not Audience.objects.get().members.exists()
