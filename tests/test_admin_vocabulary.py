"""One vocabulary across the admin: steps from 1, one date format, people by the ID they
are known by, marketing screens first on the index, and an icon instead of a 404."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from campaigns.models import Decision, Enrollment, Step
from tests.email.conftest import make_campaign as make_email_campaign
from tests.email.conftest import queue_messages
from tests.engine.conftest import T0, make_campaign, profile_of, track
from tests.engine.test_admin import ADD_URL, campaign_post
from tests.factories import make_site

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_the_outbox_numbers_steps_from_1(admin_client):
    campaign, step, _ = make_email_campaign()
    [message] = queue_messages(campaign, step)
    listing = admin_client.get("/admin/campaigns/message/").content.decode()
    assert re.search(r'<td class="field-step_number">1</td>', listing)
    page = text(admin_client.get(f"/admin/campaigns/message/{message.pk}/change/"))
    assert "Step: 1" in page or "Step 1" in page
    assert "Position" not in page


def test_the_step_form_takes_and_shows_numbers_from_1(admin_client):
    site = make_site()
    from tests.engine.conftest import make_audience, make_template

    step = {"template": make_template(site).id, "audience": make_audience(site).id}
    response = admin_client.post(
        ADD_URL, campaign_post(site, [step, {**step, "delay_minutes": 90}])
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    steps = list(Step.objects.filter(campaign__site=site).order_by("position"))
    assert [s.position for s in steps] == [0, 1]
    change = admin_client.get(f"/admin/campaigns/campaign/{steps[0].campaign_id}/change/")
    assert 'name="steps-0-position" value="1"' in change.content.decode()
    assert 'name="steps-1-position" value="2"' in change.content.decode()


def test_a_step_numbered_0_is_refused_with_a_form_error(admin_client):
    site = make_site()
    from tests.engine.conftest import make_audience, make_template

    step = {"template": make_template(site).id, "audience": make_audience(site).id}
    data = campaign_post(site, [step])
    data["steps-0-position"] = 0
    response = admin_client.post(ADD_URL, data)
    assert response.status_code == 200
    assert "greater than or equal to 1" in response.content.decode()


def test_enrollments_and_decisions_number_steps_from_1(admin_client):
    site = make_site()
    campaign = make_campaign(site)
    track(site, "Product Added", at=T0)
    enrollment = Enrollment.objects.get(campaign=campaign, profile=profile_of(site))
    Decision.objects.create(
        site=site, campaign=campaign, step=campaign.steps.get(), position=0,
        enrollment=enrollment, profile=enrollment.profile, outcome="retarget",
        reason="retargeted", decided_at=T0 + timedelta(hours=1),
    )  # fmt: skip
    listing = admin_client.get("/admin/campaigns/enrollment/").content.decode()
    assert '<td class="field-next_step">1</td>' in listing
    decisions = admin_client.get("/admin/campaigns/decision/").content.decode()
    assert '<td class="field-step_number">1</td>' in decisions
    inline = admin_client.get(f"/admin/campaigns/enrollment/{enrollment.pk}/change/")
    assert re.search(r'class="field-step_number">\s*<p>1</p>', inline.content.decode())


def test_dates_read_the_same_on_lists_and_timelines(admin_client):
    site = make_site()
    track(site, "Product Viewed", at=T0)
    profile = profile_of(site)
    listing = text(admin_client.get("/admin/tracking/profile/"))
    timeline = text(admin_client.get(f"/admin/tracking/profile/{profile.pk}/timeline/"))
    assert "2026-11-27 10:00:00" in listing
    assert "2026-11-27 10:00:00" in timeline
    assert "Nov. 27" not in listing + timeline and "a.m." not in listing + timeline


def test_an_anonymous_visitors_timeline_is_titled_by_the_cookie_id_searched_for(admin_client):
    site = make_site()
    track(site, "Product Viewed", at=T0, anonymous_id="rg-4f1c-anon")
    profile = profile_of(site, "rg-4f1c-anon")
    found = admin_client.get("/admin/tracking/profile/", {"q": "rg-4f1c-anon"}).content.decode()
    link = f"/admin/tracking/profile/{profile.pk}/timeline/?cookie=rg-4f1c-anon"
    assert f'href="{link}"' in found
    page = text(admin_client.get(link))
    assert "Timeline: anonymous visitor rg-4f1c-anon" in page
    assert f"profile {profile.pk}" not in page
    assert "Cookie IDs rg-4f1c-anon" in page


def test_a_known_persons_timeline_is_titled_by_their_email(admin_client):
    site = make_site()
    track(site, "Product Viewed", at=T0)
    profile = profile_of(site)
    profile.email = "ann@example.com"
    profile.save()
    page = text(admin_client.get(f"/admin/tracking/profile/{profile.pk}/timeline/?cookie=anon-1"))
    assert "Timeline: ann@example.com" in page


def test_the_superusers_index_lists_marketing_screens_before_the_machinery(admin_client):
    page = admin_client.get("/admin/").content.decode()
    order = re.findall(r'<div class="app-(\w+) module', page)
    assert order[:2] == ["campaigns", "tracking"]
    assert order.index("axes") > order.index("auth")
    assert order[-2:] == ["otp_totp", "admin_interface"]


@pytest.mark.parametrize("path", ["/demo/", "/admin/login/"])
def test_pages_name_an_icon_and_favicon_ico_is_not_a_404(client, path):
    from django.core.management import call_command

    call_command("seed_demo", verbosity=0)
    assert 'rel="icon" href="/static/reengage/favicon.svg"' in client.get(path).content.decode()
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/reengage/favicon.svg"
