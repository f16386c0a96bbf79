"""The visitor timeline and the audience chart in a real Chromium, as a marketer:
rendered under the Content-Security-Policy without a violation."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from campaigns.audiences import membership
from tests.browser import launch_chromium
from tests.engine.conftest import T0, identify, make_campaign, profile_of, track
from tests.factories import make_site
from tests.test_admin_csp_browser import PASSWORD, RECORD_VIOLATIONS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page():
    with launch_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.add_init_script(RECORD_VIOLATIONS)
        yield page


def test_a_marketer_reads_a_timeline_and_an_audience_chart(page, live_server, django_user_model):
    site = make_site()
    campaign = make_campaign(site)
    identify(site, email="ann@example.com", at=T0)
    track(site, "Product Added", at=T0, properties={"price": 19.5, "currency": "EUR"})
    person = profile_of(site)
    audience_id = campaign.steps.get().audience_id
    membership.add_members([(audience_id, person.id)], now=T0)
    user = django_user_model.objects.create_user("mia", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "mia")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/admin/tracking/profile/?q=ANN@example.com")
    page.click("td.field-timeline_link a")
    page.wait_for_url(f"**/admin/tracking/profile/{person.id}/timeline/")
    entries = page.locator("ol.timeline li")
    assert entries.count() == 4
    assert entries.nth(0).inner_text().count("Added to the audience") == 1
    assert "Entered the campaign" in entries.nth(1).inner_text()
    assert page.evaluate("window.__cspViolations") == []

    page.goto(f"{live_server.url}/admin/campaigns/audience/{audience_id}/change/")
    bars = page.locator(".audience-chart rect.members")
    assert bars.count() == 90
    assert "1 member now" in page.locator(".audience-chart .summary").inner_text()
    assert bars.last.bounding_box()["height"] > 10  # today's bar: one member, the peak
    assert page.evaluate("window.__cspViolations") == []
