"""The marketer's workspace end to end, in a real Chromium: from an empty campaign to its report.

A marketer (a staff user in the Marketers group, not a superuser) writes a
template and a campaign in the admin and activates it. Two visitors browse the
demo store in their own browser profiles: one signs up (a verified email) and
one stays anonymous; both add to cart and leave. The test then runs the flusher
and moves the engine's clock two hours on (no sleeping), sends what the engine
queued, and the marketer finds the email in the dev mailbox, the decision and
its reason on the visitor's timeline, the numbers on the report, and the
anonymous visitor (searched by cookie ID) in the audience.

Each key screen is saved as a screenshot under the artifacts directory
(tests.browser.artifacts_dir); `tools/docs_screenshots.py` copies them into
docs/img/ for the getting-started guide.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from playwright.sync_api import expect

from campaigns.email.sending import send_queued
from campaigns.engine.tick import tick
from campaigns.models import Audience, Campaign
from reengage.demo import DEMO_SITE_NAME
from tests.browser import artifacts_dir, artifacts_on_failure, launch_chromium
from tracking.flush import flush_until_empty
from tracking.keys import clear_key_cache

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 30_000
SHOPPER = "ann@example.com"
TEMPLATE_HTML = (
    "<h1>{% if first_name %}{{ first_name }}, your{% else %}Your{% endif %} gear is waiting</h1>\n"
    "<p>You left this in your cart at {{ site_name }}:</p>\n{{ products_block }}\n"
    "<p><a href=\"{{ cart_url|default:'#' }}\">Back to your cart</a></p>"
)


class Screens:
    """Screenshots of the key screens, numbered in the order they were taken (a
    previous run's are removed first, so the directory shows one run)."""

    def __init__(self) -> None:
        self.directory = artifacts_dir() / "workspace"
        self.directory.mkdir(parents=True, exist_ok=True)
        for old in self.directory.glob("*.png"):
            old.unlink()
        self.count = 0

    def take(self, page, name: str, *, full_page: bool = False) -> None:
        self.count += 1
        path = self.directory / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)


@pytest.fixture
def browser_context(request):
    """Opens Chromium profiles (contexts) of the test's own; on failure each one's pages
    and console are saved under the artifacts directory before it closes."""
    with launch_chromium() as browser, ExitStack() as contexts:

        def open_context(**options):
            context = browser.new_context(viewport=VIEWPORT, **options)
            # A busy machine (the whole suite on two cores) can take seconds per page.
            context.set_default_timeout(TIMEOUT_MS)
            contexts.callback(context.close)
            contexts.enter_context(artifacts_on_failure(request, context))
            return context

        yield open_context


@pytest.fixture
def demo(live_server, transactional_db, redis_client, settings):
    """The demo store as `make run` seeds it, its snippet pointed at the live server."""
    settings.PUBLIC_URL = live_server.url
    settings.EMAIL_BACKEND = "campaigns.email.devmail.EmailBackend"
    clear_key_cache()
    call_command("seed_demo", verbosity=0)
    return live_server.url


@pytest.fixture
def marketer(django_user_model):
    user = django_user_model.objects.create_user(
        "mia", "mia@shop.test", PASSWORD, is_staff=True, first_name="Mia"
    )
    user.groups.add(Group.objects.get(name="Marketers"))
    return user


def test_a_marketer_builds_a_campaign_that_emails_one_visitor_and_retargets_another(
    browser_context, demo, marketer
):
    screens = Screens()
    page = browser_context().new_page()
    log_in(page, demo, screens)
    write_template(page, demo, screens)
    campaign = build_campaign(page, demo, screens)
    activate(page, demo, campaign)

    # Two visitors, each in a browser profile of their own. The ingest drops
    # "HeadlessChrome" as a bot, so they present as the Chrome it is.
    user_agent = page.evaluate("navigator.userAgent").replace("HeadlessChrome", "Chrome")
    known = browse_and_abandon(browser_context(user_agent=user_agent), demo, screens, email=SHOPPER)
    anonymous = browse_and_abandon(browser_context(user_agent=user_agent), demo, None, email=None)
    assert known != anonymous

    run_the_clock_forward()

    read_the_email(page, demo, screens)
    see_the_decision(page, demo, screens)
    read_the_report(page, demo, screens, campaign)
    find_the_cookie_in_the_audience(page, demo, screens, anonymous)


def show(page, selector: str) -> None:
    """Scroll the page so that `selector` is at the top of the window."""
    page.locator(selector).evaluate("element => element.scrollIntoView()")


def follow(page, target) -> None:
    """Click a link or button (a selector or a locator) and wait for the page it loads."""
    with page.expect_navigation():
        if isinstance(target, str):
            page.click(target)
        else:
            target.click()


# --- the marketer --------------------------------------------------------------------------


def log_in(page, base: str, screens: Screens) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    screens.take(page, "login")
    page.fill("#id_username", "mia")
    page.fill("#id_password", PASSWORD)
    follow(page, "[type=submit]")
    assert page.url == f"{base}/admin/"
    # A marketer: campaigns, yes; the sites and their keys, no.
    expect(page.locator("a[href='/admin/campaigns/campaign/']").first).to_be_visible()
    expect(page.locator("a[href='/admin/tracking/site/']")).to_have_count(0)


def write_template(page, base: str, screens: Screens) -> None:
    page.goto(f"{base}/admin/campaigns/emailtemplate/add/")
    page.select_option("#id_site", label=DEMO_SITE_NAME)
    page.fill("#id_name", "Cart reminder")
    page.fill("#id_subject", "Your gear is still in the cart")
    page.fill("#id_preheader", "Saved for you at Trailhead Supply")
    page.fill("#id_from_name", DEMO_SITE_NAME)
    page.fill("#id_from_email", "shop@demo.invalid")
    page.fill("#id_html", TEMPLATE_HTML)
    # The live preview renders the unsaved draft with sample data.
    expect(page.frame_locator("#live-preview-frame").locator("h1")).to_contain_text(
        "Ada, your gear is waiting", timeout=TIMEOUT_MS
    )
    screens.take(page, "template-form")
    follow(page, "[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("Cart reminder")
    expect(page.frame_locator("#live-preview-frame").locator("h1")).to_contain_text(
        "Ada, your gear is waiting", timeout=TIMEOUT_MS
    )
    # Screens scrolled to a part of the page are taken last on it: the next step
    # loads another page (a click right after scrolling has landed elsewhere).
    show(page, "#live-preview")
    screens.take(page, "template-preview")


def build_campaign(page, base: str, screens: Screens) -> Campaign:
    page.goto(f"{base}/admin/campaigns/campaign/add/")
    page.select_option("#id_site", label=DEMO_SITE_NAME)
    page.fill("#id_name", "Win back abandoned carts")
    page.fill("#id_trigger_event", "Product Added")
    page.fill("#id_goal_event", "Order Completed")
    page.fill("#id_inactivity_minutes", "30")
    page.fill("#id_holdout_percent", "0")
    page.fill("#id_reentry_cooldown_hours", "24")
    # One step, added inline: an hour after the trigger, email if allowed, else retarget.
    page.click(".add-row a")
    page.fill("#id_steps-0-position", "1")
    page.fill("#id_steps-0-delay_minutes", "60")
    page.select_option("#id_steps-0-delay_from", "trigger")
    page.select_option("#id_steps-0-channel", "email_else_retarget")
    page.select_option("#id_steps-0-template", label="Cart reminder")
    page.select_option("#id_steps-0-audience", label="Demo: cart abandoners")
    follow(page, "[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("Win back abandoned carts")
    # The saved campaign reads back in words, its step included.
    in_words = page.locator("fieldset", has_text="This campaign, in words")
    expect(in_words).to_contain_text("email “Cart reminder”")
    screens.take(page, "campaign-saved")
    show(page, "fieldset:has(#id_goal_event)")
    screens.take(page, "campaign-form")
    campaign = Campaign.objects.get(name="Win back abandoned carts")
    assert campaign.status == Campaign.Status.DRAFT
    assert campaign.steps.get().template.name == "Cart reminder"
    return campaign


def activate(page, base: str, campaign: Campaign) -> None:
    """Activate the new campaign and pause the seeded demo one, which shares its trigger."""
    page.goto(f"{base}/admin/campaigns/campaign/")
    for name, action, says in [
        ("Win back abandoned carts", "activate", "is active"),
        ("Demo: abandoned cart", "pause", "1 campaign(s) paused"),
    ]:
        pk = Campaign.objects.get(name=name).pk
        page.check(f"input[name=_selected_action][value='{pk}']")
        page.select_option("select[name=action]", action)
        follow(page, "[name=index]")
        expect(page.locator(".messagelist")).to_contain_text(says)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ACTIVE


def read_the_email(page, base: str, screens: Screens) -> None:
    page.goto(f"{base}/admin/campaigns/devmail/")
    row = page.locator("#result_list tbody tr", has_text=SHOPPER)
    expect(row).to_contain_text("Your gear is still in the cart")
    screens.take(page, "dev-mailbox")
    follow(page, row.locator("th a"))
    email = page.frame_locator("iframe").locator("body")
    expect(email).to_contain_text("Your gear is waiting")
    expect(email).to_contain_text("Folding lantern")
    screens.take(page, "email")


def see_the_decision(page, base: str, screens: Screens) -> None:
    """The visitor, found by their email: their timeline says what was decided and why."""
    open_timeline(page, base, SHOPPER)
    timeline = page.locator("ol.timeline")
    expect(timeline.locator("li.decision")).to_contain_text("Email queued")
    expect(timeline.locator("li.email").first).to_contain_text(
        f"Email of “Win back abandoned carts”, step 1: sent to {SHOPPER}"
    )
    screens.take(page, "visitor-timeline")


def open_timeline(page, base: str, who: str) -> None:
    """Search the people by email or cookie ID and open the one match's timeline."""
    page.goto(f"{base}/admin/tracking/profile/?q={who}")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    follow(page, rows.get_by_role("link", name="Timeline"))


def read_the_report(page, base: str, screens: Screens, campaign: Campaign) -> None:
    page.goto(f"{base}/admin/campaigns/campaign/")
    row = page.locator("#result_list tr", has_text=campaign.name)
    follow(page, row.get_by_role("link", name="Report"))
    expect(page.locator(".verdict")).not_to_be_empty()
    totals = page.locator("table", has_text="Emails queued")
    expect(totals.locator("tr", has_text="Enrollments")).to_contain_text("2")
    expect(totals.locator("tr", has_text="People")).to_contain_text("2")
    expect(totals.locator("tr", has_text="Emails queued")).to_contain_text("1")
    expect(totals.locator("tr", has_text="Retargeted")).to_contain_text("1")
    expect(page.locator("svg.chart rect").first).to_be_attached()
    screens.take(page, "report", full_page=True)


def find_the_cookie_in_the_audience(page, base: str, screens: Screens, cookie_id: str) -> None:
    """The anonymous visitor, found by their cookie ID, joined the audience; the audience
    lists the cookie ID and counts the member."""
    open_timeline(page, base, cookie_id)
    expect(page.locator("ol.timeline li.audience")).to_contain_text(
        "Added to the audience “Demo: cart abandoners”"
    )
    audience = Audience.objects.get(name="Demo: cart abandoners")
    page.goto(f"{base}/admin/campaigns/audiencemember/?audience__id__exact={audience.pk}")
    expect(page.locator("#result_list tbody")).to_contain_text(cookie_id)
    screens.take(page, "audience")
    page.goto(f"{base}/admin/campaigns/audience/{audience.pk}/change/")
    chart = page.locator(".audience-chart")
    expect(chart).to_contain_text("1 member now")
    show(page, "fieldset:has(.audience-chart)")
    screens.take(page, "audience-chart")


# --- the visitors --------------------------------------------------------------------------


def browse_and_abandon(context, base: str, screens: Screens | None, *, email: str | None) -> str:
    """Sign up (when given an email), add a lantern to the cart, look at the cart and
    leave, each step once reengage has acknowledged what the snippet sent (so nothing
    is left to arrive after the test). Returns the visitor's cookie ID."""
    page = context.new_page()
    if email:
        page.goto(f"{base}/demo/signup/")
        page.fill("input[name=email]", email)
        with delivered(page, "user_hash"):
            follow(page, "button[type=submit]")
        expect(page.locator("main")).to_contain_text(f"Welcome, {email}")
    page.goto(f"{base}/demo/product/lamp/")
    with delivered(page, "Product Added"):
        page.click("#add-to-cart")
    expect(page.locator("#added")).to_be_visible()
    if screens:
        screens.take(page, "demo-product")
    with delivered(page, "Cart Viewed"):
        follow(page, "#cart-link")
    expect(page.locator("#cart")).to_contain_text("Folding lantern")
    if screens:
        screens.take(page, "cart")
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "rg_aid")
    page.close()
    return cookie


def delivered(page, text: str):
    """On leaving the block, wait until reengage acknowledged the snippet's batch holding
    `text`. A visitor who moves on sooner leaves the call queued for a later page, or,
    on their first page before the snippet has its site's settings, loses it.
    """
    return page.expect_response(
        lambda response: (
            response.url.endswith("/v1/batch")
            and text in (response.request.post_data or "")
            and response.ok
        )
    )


# --- the engine ----------------------------------------------------------------------------


def run_the_clock_forward() -> None:
    """Store the events, then decide and send as beat would two hours later."""
    flushed = flush_until_empty(budget_seconds=10)
    assert flushed.stored > 0 and not flushed.errors
    later = datetime.now(UTC) + timedelta(hours=2)
    decided = tick(now=later)
    # The anonymous visitor is retargeted because they have no verified email.
    assert dict(decided.counts) == {("email", "emailed"): 1, ("retarget", "no_verified_email"): 1}
    sent = send_queued(clock=lambda: later)
    assert sent.counts == {"sent": 1}
