"""The first hour of a site owner and a marketer, in a real Chromium, on two laptop screens.

The site owner tests the install with a headless browser (what Playwright and
Puppeteer are) and the install page says the event arrived and was dropped as a
bot, naming its user agent. A shopper (presenting as the ordinary Chrome it is)
signs up, leaves a lantern in the cart, gets the demo email, follows its cart link
back to the cart and buys. The marketer finds the Report link on the campaign list
without scrolling sideways, and the report shows the treated group's conversion
rate though the demo campaign has no holdout.

`make run`'s console (no secret key, one screen) is tests/test_devserver_console.py.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from campaigns.email.sending import send_queued
from campaigns.engine.tick import tick
from campaigns.models import Campaign, DevMail, Enrollment
from reengage.demo import DEMO_SITE_NAME
from tests.browser import artifacts_dir, artifacts_on_failure, launch_chromium
from tests.test_workspace_e2e_browser import delivered, follow
from tracking.flush import flush_until_empty
from tracking.keys import clear_key_cache
from tracking.models import Site

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENS = [{"width": 1280, "height": 800}, {"width": 1440, "height": 900}]
TIMEOUT_MS = 30_000
SHOPPER = "ann@example.com"


@pytest.fixture
def demo(live_server, transactional_db, redis_client, settings):
    settings.PUBLIC_URL = live_server.url
    settings.EMAIL_BACKEND = "campaigns.email.devmail.EmailBackend"
    clear_key_cache()
    call_command("seed_demo", verbosity=0)
    return live_server.url


@pytest.fixture
def chromium(request):
    with launch_chromium() as browser, ExitStack() as contexts:

        def open_context(viewport, **options):
            context = browser.new_context(viewport=viewport, **options)
            context.set_default_timeout(TIMEOUT_MS)
            contexts.callback(context.close)
            contexts.enter_context(artifacts_on_failure(request, context))
            return context

        yield open_context


class Screens:
    def __init__(self, viewport: dict) -> None:
        self.directory = artifacts_dir() / f"first-hour-{viewport['width']}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def take(self, page, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(self.directory / f"{self.count:02d}-{name}.png"))


@pytest.mark.parametrize("viewport", SCREENS, ids=lambda v: f"{v['width']}x{v['height']}")
def test_a_newcomers_first_hour_with_the_demo(chromium, demo, admin_user, viewport):
    screens = Screens(viewport)
    site = Site.objects.get(name=DEMO_SITE_NAME)
    admin = chromium(viewport).new_page()
    log_in(admin, demo)

    the_owners_headless_test_is_named_a_bot_drop(chromium(viewport), admin, demo, site, screens)

    headless = admin.evaluate("navigator.userAgent")
    shopper = chromium(viewport, user_agent=headless.replace("HeadlessChrome", "Chrome"))
    page = leave_a_lantern_in_the_cart(shopper, demo)
    run_the_clock_forward()

    the_emails_cart_link_opens_the_cart(page, screens)
    buy(page)
    the_report_link_is_on_screen_and_the_report_shows_the_treated_rate(
        admin, demo, viewport, screens
    )


def log_in(page, base: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    follow(page, "input[type=submit]")


def the_owners_headless_test_is_named_a_bot_drop(context, admin, base, site, screens) -> None:
    probe = context.new_page()
    with delivered(probe, "Product Viewed"):
        probe.goto(f"{base}/demo/product/lamp/")
    probe.close()
    admin.goto(f"{base}/admin/tracking/site/{site.pk}/install/")
    check = admin.locator("#last-event")
    expect(check).to_contain_text("dropped as a bot (user agent “")
    expect(check).to_contain_text("HeadlessChrome/")
    screens.take(admin, "install-check")


def leave_a_lantern_in_the_cart(context, base: str):
    page = context.new_page()
    page.goto(f"{base}/demo/signup/")
    page.fill("input[name=email]", SHOPPER)
    with delivered(page, "user_hash"):
        follow(page, "button[type=submit]")
    page.goto(f"{base}/demo/product/lamp/")
    with delivered(page, "Product Added"):
        page.click("#add-to-cart")
    page.goto(f"{base}/demo/")  # and leaves
    return page


def run_the_clock_forward() -> None:
    """Store the events, then decide and send as beat would after the demo's 2 minutes."""
    flushed = flush_until_empty(budget_seconds=10)
    assert flushed.stored > 0 and not flushed.errors
    later = datetime.now(UTC) + timedelta(minutes=3)
    assert dict(tick(now=later).counts) == {("email", "emailed"): 1}
    assert send_queued(clock=lambda: later).counts == {"sent": 1}


def the_emails_cart_link_opens_the_cart(page, screens) -> None:
    mail = DevMail.objects.get(to__contains=SHOPPER)
    links = {
        re.sub(r"<[^>]+>", "", label).strip(): unescape(href)
        for href, label in re.findall(r'<a href="([^"]+)"[^>]*>(.*?)</a>', mail.html, re.S)
    }
    page.goto(links["Back to your cart"])  # the click-tracking redirect, then the shop
    assert re.match(r".*/demo/cart/\?utm_source=reengage", page.url), page.url
    expect(page.locator("#cart")).to_contain_text("Folding lantern")
    screens.take(page, "cart-from-email")


def buy(page) -> None:
    page.click("#checkout")
    page.wait_for_url("**/demo/checkout/")
    with delivered(page, "Order Completed"):
        page.click("#place-order")
    assert flush_until_empty(budget_seconds=10).stored > 0
    enrollment = Enrollment.objects.get(campaign__name="Demo: abandoned cart")
    assert (enrollment.status, enrollment.exit_reason) == ("exited", "converted")


def the_report_link_is_on_screen_and_the_report_shows_the_treated_rate(
    page, base, viewport, screens
) -> None:
    page.goto(f"{base}/admin/campaigns/campaign/")
    report = page.locator("#result_list td.field-report_link a")
    expect(report).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    # Nothing of the list is hidden in a sideways-scrolling box either.
    results = page.locator("#changelist .results")
    assert results.evaluate("e => e.scrollWidth <= e.clientWidth")
    screens.take(page, "campaign-list")
    follow(page, report)
    treated = page.locator("tr.treated")
    expect(treated.locator("td.rate")).to_have_text("100.0 %")
    expect(page.locator("tr.holdout td.rate")).to_have_text("– (no holdout)")
    assert Campaign.objects.get(name="Demo: abandoned cart").holdout_percent == 0
    screens.take(page, "report")
