"""A member of the Marketers group does their work in the admin (campaigns, templates,
messages, suppressions) and never sees a site's secret key or its settings."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core import mail

from campaigns.models import Campaign
from tests.email.conftest import make_campaign, make_profile

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(django_user_model, client):
    user = django_user_model.objects.create_user("mia", email="mia@shop.test", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    return client


def test_a_marketer_duplicates_previews_and_test_sends(marketer):
    campaign, _, template = make_campaign()
    make_profile(campaign.site, "grace@example.com", traits={"first_name": "Grace"})

    duplicated = marketer.post(f"/admin/campaigns/campaign/{campaign.id}/duplicate/")
    assert duplicated.status_code == 302
    assert Campaign.objects.filter(name="Copy of Abandoned cart", status="draft").exists()

    preview = marketer.get(f"/admin/campaigns/emailtemplate/{template.id}/preview/",
                           {"visitor": "grace@example.com"})  # fmt: skip
    assert "Grace, your cart is waiting" in preview.text

    marketer.post(f"/admin/campaigns/emailtemplate/{template.id}/send-test/")
    [email] = mail.outbox
    assert email.to == ["mia@shop.test"]


def test_no_page_a_marketer_opens_shows_a_secret_key(marketer):
    campaign, _, template = make_campaign()
    site = campaign.site
    pages = [
        "/admin/",
        "/admin/campaigns/campaign/",
        "/admin/campaigns/campaign/add/",
        f"/admin/campaigns/campaign/{campaign.id}/change/",
        f"/admin/campaigns/campaign/{campaign.id}/report/",
        f"/admin/campaigns/emailtemplate/{template.id}/change/",
        f"/admin/campaigns/emailtemplate/{template.id}/preview/",
        "/admin/campaigns/message/",
        "/admin/campaigns/suppression/",
        "/admin/campaigns/suppression/add/",
        "/admin/tracking/profile/",
    ]
    for url in pages:
        response = marketer.get(url)
        assert response.status_code == 200, url
        assert site.secret_key not in response.text, url
        assert site.secret_key[:12] not in response.text, url
    for url in (f"/admin/tracking/site/{site.id}/change/", f"/admin/tracking/site/{site.id}/install/",
                f"/admin/tracking/site/{site.id}/install/last-event/",
                "/admin/admin_interface/theme/"):  # fmt: skip
        assert marketer.get(url).status_code == 403, url
    assert (
        marketer.post(f"/admin/tracking/site/{site.id}/change/", {"name": "x"}).status_code == 403
    )


def test_admin_pages_carry_the_theme_and_still_let_people_zoom(marketer):
    page = marketer.get("/admin/").text
    assert "admin-interface" in page  # the theme's body class: its templates are in use
    assert page.count('name="viewport"') == 1
    assert "user-scalable=no" not in page and "maximum-scale" not in page
    assert 'class="theme-toggle"' not in page  # one light palette: a toggle would do nothing
