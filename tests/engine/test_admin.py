"""Marketers configure campaigns in the admin; bad setups are refused with clear errors."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign, Decision, Step
from tests.engine.conftest import T0, make_audience, make_campaign, make_template, minutes, track
from tests.factories import make_site

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/campaigns/campaign/add/"
LIST_URL = "/admin/campaigns/campaign/"


@pytest.fixture
def site():
    return make_site()


def campaign_post(site, steps: list[dict], **fields) -> dict:
    data = {
        "site": site.id,
        "name": "Abandoned cart",
        "status": "active",
        "priority": 100,
        "trigger_event": "Product Added",
        "trigger_conditions": "[]",
        "audience_conditions": "{}",
        "goal_event": "Order Completed",
        "reentry_cooldown_hours": 168,
        "holdout_percent": 10,
        "steps-TOTAL_FORMS": len(steps),
        "steps-INITIAL_FORMS": 0,
        "steps-MIN_NUM_FORMS": 0,
        "steps-MAX_NUM_FORMS": 1000,
    }
    for n, step in enumerate(steps):
        values = {"position": n + 1, "delay_minutes": 60, "delay_from": "trigger",
                  "channel": "email_else_retarget", **step}  # fmt: skip
        for key, value in values.items():
            data[f"steps-{n}-{key}"] = "" if value is None else value
    data.update(fields)
    return data


def errors_of(response) -> str:
    assert response.status_code == 200, "the form was accepted"
    return response.content.decode()


def test_a_complete_three_step_campaign_is_saved_active(admin_client, site):
    template, audience = make_template(site), make_audience(site)
    step = {"template": template.id, "audience": audience.id}
    response = admin_client.post(
        ADD_URL,
        campaign_post(
            site, [{**step}, {**step, "delay_minutes": 1440}, {**step, "delay_minutes": 4320}]
        ),
    )
    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert campaign.status == "active"
    assert list(campaign.steps.values_list("delay_minutes", flat=True)) == [60, 1440, 4320]


def test_a_new_campaign_starts_with_empty_condition_boxes(admin_client):
    page = admin_client.get(ADD_URL).text
    assert "null</textarea>" not in page
    assert 'id="id_audience_conditions">\n{}</textarea>' in page


def test_a_goal_equal_to_the_trigger_is_refused(admin_client, site):
    template, audience = make_template(site), make_audience(site)
    page = errors_of(
        admin_client.post(
            ADD_URL,
            campaign_post(
                site,
                [{"template": template.id, "audience": audience.id}],
                goal_event="Product Added",
            ),
        )
    )
    assert "The goal cannot be the trigger" in page
    assert not Campaign.objects.exists()


def test_a_holdout_over_half_is_refused(admin_client, site):
    page = errors_of(admin_client.post(ADD_URL, campaign_post(site, [], holdout_percent=60)))
    assert "A holdout over 50 %" in page or "less than or equal to 50" in page


def test_an_emailing_step_without_a_template_is_refused(admin_client, site):
    audience = make_audience(site)
    page = errors_of(admin_client.post(ADD_URL, campaign_post(site, [{"audience": audience.id}])))
    assert "This step can send an email: choose its template" in page


def test_a_retargeting_step_without_an_audience_is_refused(admin_client, site):
    page = errors_of(
        admin_client.post(ADD_URL, campaign_post(site, [{"channel": "retarget_only"}]))
    )
    assert "This step can retarget: choose the audience" in page


def test_a_template_of_another_site_is_refused(admin_client, site):
    other = make_site(name="Other shop")
    page = errors_of(
        admin_client.post(
            ADD_URL,
            campaign_post(site, [{"channel": "email_only", "template": make_template(other).id}]),
        )
    )
    assert "belongs to another site" in page


def test_a_malformed_trigger_condition_names_the_problem(admin_client, site):
    template = make_template(site)
    page = errors_of(
        admin_client.post(
            ADD_URL,
            campaign_post(
                site,
                [{"channel": "email_only", "template": template.id}],
                trigger_conditions='[{"property": "value", "op": ">=", "value": "fifty"}]',
            ),
        )
    )
    assert "condition 1: value &gt;= compares numbers" in page


def test_an_active_campaign_without_steps_is_refused(admin_client, site):
    page = errors_of(admin_client.post(ADD_URL, campaign_post(site, [])))
    assert "An active campaign needs at least one step" in page


def test_the_activate_action_refuses_a_campaign_that_cannot_run(admin_client, site):
    empty = Campaign.objects.create(site=site, name="Empty", status="draft")
    ready = make_campaign(site, name="Ready", status="draft")

    response = admin_client.post(
        LIST_URL, {"action": "activate", "_selected_action": [empty.id, ready.id]}, follow=True
    )

    page = response.content.decode()
    assert "“Empty” was not activated: It has no steps" in page
    empty.refresh_from_db()
    ready.refresh_from_db()
    assert (empty.status, ready.status) == ("draft", "active")


def test_pausing_holds_enrollments_until_activated_again(admin_client, site):
    campaign = make_campaign(site)
    admin_client.post(LIST_URL, {"action": "pause", "_selected_action": [campaign.id]})
    campaign.refresh_from_db()
    assert campaign.status == "paused"


def test_an_enrollment_page_shows_its_timeline_in_words(admin_client, site):
    from campaigns.engine.tick import tick

    make_campaign(site)
    track(site, "Product Added")
    tick(now=T0 + minutes(60))
    decision = Decision.objects.get()

    page = admin_client.get(f"/admin/campaigns/enrollment/{decision.enrollment_id}/change/")

    assert page.status_code == 200
    assert "No verified email address" in page.content.decode()
    assert Step.objects.count() == 1
