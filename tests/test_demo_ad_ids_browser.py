"""The demo store in a real Chromium: an anonymous abandoner carries Meta's and Google's ids.

The demo sets the `_fbp` and `_ga` cookies Meta's pixel and Google's tag would set; the
snippet sends them, the flusher keeps them, and once the demo campaign retargets the
visitor, the audience's reach counts them for both platforms.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from campaigns import audiences
from campaigns.engine.tick import tick
from campaigns.models import Audience
from tests.browser import launch_chromium
from tracking.flush import flush_until_empty
from tracking.keys import clear_key_cache
from tracking.models import AdIdentifiers

pytestmark = pytest.mark.browser


def test_the_demos_anonymous_abandoner_reaches_the_audience_with_ids_meta_and_google_match(
    live_server, transactional_db, redis_client, settings
):
    settings.PUBLIC_URL = live_server.url
    clear_key_cache()
    call_command("seed_demo", verbosity=0)
    with launch_chromium() as browser:
        probe = browser.new_page()
        user_agent = probe.evaluate("navigator.userAgent").replace("HeadlessChrome", "Chrome")
        probe.close()
        context = browser.new_context(user_agent=user_agent)
        page = context.new_page()
        page.goto(f"{live_server.url}/demo/product/lamp/")
        with page.expect_response(
            lambda r: r.url.endswith("/v1/batch") and "Product Added" in (r.request.post_data or "")
        ):
            page.click("#add-to-cart")
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        # A second page keeps the same ids (set once, on the first visit).
        page.goto(f"{live_server.url}/demo/cart/")
        assert {c["name"]: c["value"] for c in context.cookies()}["_fbp"] == cookies["_fbp"]
        context.close()
    assert re.fullmatch(r"fb\.1\.\d{13}\.\d{10}", cookies["_fbp"])
    assert re.fullmatch(r"GA1\.1\.\d{10}\.\d{10}", cookies["_ga"])

    flush_until_empty(budget_seconds=10)
    ids = AdIdentifiers.objects.get(visitor__anonymous_id=cookies["rg_aid"])
    assert ids.fbp == cookies["_fbp"]
    assert ids.ga_client_id == cookies["_ga"].removeprefix("GA1.1.")

    tick(now=datetime.now(UTC) + timedelta(hours=2))
    audience = Audience.objects.get(site=ids.site)
    reach = audiences.audience_reach(audience.id)
    assert (reach.members, reach.meta, reach.google, reach.hashed_email) == (1, 1, 1, 0)
