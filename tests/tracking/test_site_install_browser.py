"""The install page in Chromium: Copy puts the snippet on the clipboard, and the live
check turns from "waiting" to the event that just arrived, without a reload."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.browser import launch_chromium
from tests.factories import make_site, segment_event, store_calls
from tracking.install import WAITING, snippet_parts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def test_copy_and_the_live_check_work(live_server, django_user_model, settings):
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    site = make_site()
    loader, _ = snippet_parts(site, settings.PUBLIC_URL)
    with launch_chromium() as browser:
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "root")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")

        page.goto(f"{live_server.url}/admin/tracking/site/{site.id}/install/")
        check = page.locator("#last-event")
        assert check.text_content() == WAITING

        copy = page.locator('[data-copy="copy-loader"]')
        copy.click()
        page.wait_for_function("b => b.textContent === 'Copied'", arg=copy.element_handle())
        assert page.evaluate("navigator.clipboard.readText()") == loader

        # The first event arrives while the owner watches the page.
        view = segment_event("page", name="Cart")
        view["context"].update(page={"url": "https://shop.test/cart"},
                               library={"name": "reengage.js"})  # fmt: skip
        store_calls(site, view, trusted=False, received_at=datetime.now(UTC))
        page.wait_for_function(
            "() => document.getElementById('last-event').textContent.startsWith('Last event')",
            timeout=15_000,
        )
        assert "page “Cart”, from https://shop.test/cart" in check.text_content()
        assert "is-receiving" in page.locator("#install-check").get_attribute("class")
        assert errors == []


def test_each_sdk_setup_opens_and_copies_as_shown(live_server, django_user_model, settings):
    from tests.browser import artifacts_dir
    from tracking.install import sdk_snippets

    settings.PUBLIC_URL = live_server.url
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    site = make_site()
    with launch_chromium() as browser:
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "root")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        page.goto(f"{live_server.url}/admin/tracking/site/{site.id}/install/#sdks")
        for sdk in sdk_snippets(live_server.url, site.write_key):
            page.click(f"#sdk-{sdk.key} summary")
            copy = page.locator(f'[data-copy="copy-sdk-{sdk.key}"]')
            copy.click()
            page.wait_for_function("b => b.textContent === 'Copied'", arg=copy.element_handle())
            assert page.evaluate("navigator.clipboard.readText()").strip() == sdk.code.strip()
        page.click("#sdk-analytics-next summary")  # closed again: the others stay open
        artifacts_dir().mkdir(parents=True, exist_ok=True)
        page.locator("#sdks").screenshot(path=str(artifacts_dir() / "install-page-sdks.png"))
