"""The campaign admin for marketers: the campaign in words, duplicate, clean defaults."""

from __future__ import annotations

import pytest

from campaigns.engine.describe import campaign_in_words, condition_in_words, duration
from campaigns.models import Campaign, Decision, Enrollment, PromoPool, StepPromo, StepVariant
from tests.engine.conftest import T0, make_audience, make_campaign, make_template, minutes, track
from tests.factories import make_site

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/campaigns/campaign/"


@pytest.fixture
def site():
    return make_site()


def test_a_new_campaign_starts_with_empty_conditions_not_null(admin_client):
    import re

    page = admin_client.get(f"{LIST_URL}add/").text
    areas = dict(re.findall(r'<textarea name="(\w+)"[^>]*>\n(.*?)</textarea>', page, re.S))
    assert (areas["trigger_conditions"], areas["audience_conditions"]) == ("[]", "{}")


@pytest.mark.parametrize(
    ("minutes_", "words"),
    [(60, "1 hour"), (90, "90 minutes"), (1440, "1 day"), (4320, "3 days"), (1, "1 minute")],
)
def test_durations_read_in_the_largest_whole_unit(minutes_, words):
    assert duration(minutes_) == words


def test_conditions_read_as_words():
    assert condition_in_words({"property": "value", "op": ">=", "value": 50}) == (
        "value is at least 50"
    )
    assert condition_in_words({"property": "url", "op": "contains", "value": "/sale"}) == (
        "url contains “/sale”"
    )
    assert condition_in_words({"trait": "plan", "op": "exists"}, "trait") == "plan is set"


def test_a_campaign_reads_as_sentences(site):
    template, audience = (
        make_template(site, "Cart reminder"),
        make_audience(site, "Cart abandoners"),
    )
    campaign = make_campaign(
        site, template=template, audience=audience, holdout_percent=10,
        reentry_cooldown_hours=168, inactivity_minutes=30, email_cap_count=2, email_cap_days=7,
        trigger_conditions=[{"property": "value", "op": ">=", "value": 50}],
        audience_conditions={"email": "verified", "stage": "cart",
                             "traits": [{"trait": "plan", "op": "=", "value": "pro"}]},
        steps=[{"delay_minutes": 60}, {"delay_minutes": 1440, "delay_from": "previous",
                                       "channel": "retarget_only"}],
    )  # fmt: skip
    assert campaign_in_words(campaign) == [
        "Enters: a visitor who does “Product Added” where value is at least 50, "
        "at most once in 7 days.",
        "Only if they have a verified email, they added to the cart in the last 30 days and "
        "their plan is “pro”.",
        "Step 1, 1 hour after the trigger: email “Cart reminder”; if they cannot be emailed, "
        "join the audience “Cart abandoners”.",
        "Step 2, 1 day after the previous step: join the audience “Cart abandoners”.",
        "Stops for a person when they do “Order Completed”, or after the last step. The first "
        "step waits until they have been inactive for 30 minutes.",
        "10 % of those who enter get nothing (the holdout), so the report can show what the "
        "campaign adds.",
        "At most 2 email(s) from this campaign per person in 7 days.",
    ]


def test_the_change_page_shows_the_campaign_in_words(admin_client, site):
    campaign = make_campaign(site)
    page = admin_client.get(f"{LIST_URL}{campaign.id}/change/").text
    assert "This campaign, in words" in page
    assert "Enters: a visitor who does “Product Added”" in page
    assert "Step 1, 1 hour after the trigger: email “Your cart”" in page


def test_duplicating_copies_the_setup_as_a_draft_without_history(admin_client, site):
    from campaigns.engine.tick import tick

    campaign = make_campaign(site, steps=[{"delay_minutes": 60}, {"delay_minutes": 1440}])
    first = campaign.steps.get(position=0)
    StepVariant.objects.create(step=first, template=make_template(site, "Variant B"), share=30)
    StepPromo.objects.create(step=first, pool=PromoPool.objects.create(site=site, name="Codes"))
    track(site, "Product Added")
    tick(now=T0 + minutes(60))
    assert Enrollment.objects.filter(campaign=campaign).exists()

    response = admin_client.post(
        LIST_URL, {"action": "duplicate", "_selected_action": [campaign.id]}, follow=True
    )

    copy = Campaign.objects.get(name="Copy of Abandoned cart")
    assert "duplicated as the draft “Copy of Abandoned cart”" in response.text
    assert copy.status == Campaign.Status.DRAFT
    assert (copy.trigger_event, copy.goal_event, copy.site_id) == (
        "Product Added", "Order Completed", site.id)  # fmt: skip
    assert list(copy.steps.values_list("position", "delay_minutes", "template_id")) == list(
        campaign.steps.values_list("position", "delay_minutes", "template_id")
    )
    copied_first = copy.steps.get(position=0)
    assert [v.share for v in copied_first.variants.all()] == [30]
    assert copied_first.promo.pool.name == "Codes"
    assert not Enrollment.objects.filter(campaign=copy).exists()
    assert not Decision.objects.filter(campaign=copy).exists()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ACTIVE  # the original runs on


def test_the_duplicate_button_opens_the_new_draft(admin_client, site):
    campaign = make_campaign(site)
    page = admin_client.get(f"{LIST_URL}{campaign.id}/change/").text
    assert f'action="{LIST_URL}{campaign.id}/duplicate/"' in page

    response = admin_client.post(f"{LIST_URL}{campaign.id}/duplicate/")

    copy = Campaign.objects.exclude(pk=campaign.pk).get()
    assert response.status_code == 302
    assert response["Location"] == f"{LIST_URL}{copy.id}/change/"
    assert admin_client.get(f"{LIST_URL}{campaign.id}/duplicate/").status_code == 405
