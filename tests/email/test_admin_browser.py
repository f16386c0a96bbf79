"""The template editor's live preview, driven in a real headless Chromium."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.browser import launch_chromium
from tests.email.conftest import make_campaign

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_page():
    with launch_chromium() as browser:
        yield browser.new_page()


def test_the_preview_follows_unsaved_edits_and_shows_refused_tags(browser_page, live_server):
    get_user_model().objects.create_superuser("mia", "mia@shop.test", "pw")
    _, _, template = make_campaign()
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "mia")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/campaigns/emailtemplate/{template.pk}/change/")
    frame = page.frame_locator("#live-preview-frame")
    expect(frame.locator("body")).to_contain_text("Hello Ada")

    page.fill("#id_html", "<p>A new draft for {{ first_name }}</p>")
    expect(frame.locator("body")).to_contain_text("A new draft for Ada")
    expect(page.locator("#live-preview-subject")).to_have_text("Ada, your cart is waiting")

    page.fill("#id_html", "<p>{% include 'admin/base.html' %}</p>")
    expect(page.locator("#live-preview-errors")).to_contain_text("{% include %} is not allowed")
    assert template.__class__.objects.get(pk=template.pk).html.startswith("<p>Hello")
