"""The engine end to end, clock-driven: events stored → enrollments → ticks → decisions."""

from __future__ import annotations

import pytest
from django.db import connection

from campaigns.engine.tick import tick
from campaigns.models import AudienceMember, Decision, Enrollment, Message, SitePolicy, Step
from campaigns.models.email import CampaignOptOut, Suppression, email_hash
from tests.engine.conftest import (
    T0,
    envelope,
    identify,
    make_audience,
    make_campaign,
    minutes,
    profile_of,
    track,
)
from tests.factories import make_site
from tracking.storage import store_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    return make_site()


def decisions(enrollment) -> list[tuple[int, str, str]]:
    return list(
        Decision.objects.filter(enrollment=enrollment)
        .order_by("id")
        .values_list("position", "outcome", "reason")
    )


def test_an_abandoned_cart_is_emailed_at_one_hour_and_not_before(site):
    campaign = make_campaign(site)
    identify(site, at=T0 - minutes(5))
    track(
        site,
        "Product Added",
        properties={"value": 30, "currency": "EUR", "products": [{"sku": "A"}]},
    )
    enrollment = Enrollment.objects.get(campaign=campaign)
    assert enrollment.due_at == T0 + minutes(60)
    assert enrollment.trigger_properties == {
        "value": 30,
        "currency": "EUR",
        "products": [{"sku": "A"}],
    }

    assert tick(now=T0 + minutes(59)).decided == 0
    result = tick(now=T0 + minutes(60))

    assert result.counts == {("email", "emailed"): 1}
    message = Message.objects.get()
    assert (message.to_email, message.status, message.position) == ("ann@example.com", "queued", 0)
    assert message.enrollment_id == enrollment.id
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.due_at) == ("completed", None)
    assert enrollment.finished_at == T0 + minutes(60)


def test_a_purchase_at_thirty_minutes_exits_at_once_and_nothing_is_sent(site):
    campaign = make_campaign(site)
    identify(site, at=T0 - minutes(5))
    track(site, "Product Added")
    track(site, "Order Completed", at=T0 + minutes(30))

    enrollment = Enrollment.objects.get(campaign=campaign)
    assert (enrollment.status, enrollment.exit_reason) == ("exited", "converted")
    assert decisions(enrollment) == [(0, "exit", "converted")]
    assert tick(now=T0 + minutes(120)).decided == 0
    assert not Message.objects.exists()


def test_a_purchase_that_arrives_late_exits_at_decision_time(site):
    # The order event reaches the database only after the step was due: the
    # decision itself finds it on the profile.
    campaign = make_campaign(site)
    identify(site, at=T0 - minutes(5))
    track(site, "Product Added")
    profile = profile_of(site)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tracking_event (site_id, profile_id, message_id, type, name, timestamp,"
            " received_at) VALUES (%s, %s, 'm-late', 'track', 'Order Completed', %s, %s)",
            [site.id, profile.id, T0 + minutes(30), T0 + minutes(30)],
        )
    assert tick(now=T0 + minutes(60)).counts == {("exit", "converted"): 1}
    assert Enrollment.objects.get(campaign=campaign).status == "exited"
    assert not Message.objects.exists()


def test_browsing_on_restarts_the_inactivity_timer(site):
    campaign = make_campaign(site, inactivity_minutes=60)
    identify(site, at=T0 - minutes(5))
    track(site, "Product Added")
    track(site, "Product Viewed", at=T0 + minutes(40))

    enrollment = Enrollment.objects.get(campaign=campaign)
    assert enrollment.due_at == T0 + minutes(100)
    assert tick(now=T0 + minutes(60)).decided == 0
    assert tick(now=T0 + minutes(100)).counts == {("email", "emailed"): 1}


def test_an_anonymous_visitor_joins_the_audience(site):
    audience = make_audience(site)
    campaign = make_campaign(site, audience=audience)
    track(site, "Product Added")

    assert tick(now=T0 + minutes(60)).counts == {("retarget", "no_verified_email"): 1}
    member = AudienceMember.objects.get()
    assert (member.audience_id, member.profile_id) == (audience.id, profile_of(site).id)
    assert not Message.objects.exists()
    assert Enrollment.objects.get(campaign=campaign).status == "completed"


def test_an_unverified_email_goes_to_the_audience_and_is_never_emailed(site):
    make_campaign(site, steps=[{"delay_minutes": 60}, {"delay_minutes": 24 * 60}])
    identify(site, verified=False, at=T0 - minutes(5))
    track(site, "Product Added")

    tick(now=T0 + minutes(60))
    result = tick(now=T0 + minutes(24 * 60))

    assert result.counts == {("retarget", "no_verified_email"): 1}
    assert AudienceMember.objects.count() == 1
    assert not Message.objects.exists()


def test_email_only_records_nothing_with_the_reason(site):
    campaign = make_campaign(site, steps=[{"delay_minutes": 60, "channel": "email_only"}])
    track(site, "Product Added")
    assert tick(now=T0 + minutes(60)).counts == {("nothing", "no_verified_email"): 1}
    assert not AudienceMember.objects.exists()
    assert Enrollment.objects.get(campaign=campaign).status == "completed"


def test_retarget_only_never_emails_a_verified_person(site):
    make_campaign(site, steps=[{"delay_minutes": 60, "channel": "retarget_only"}])
    identify(site, at=T0 - minutes(5))
    track(site, "Product Added")
    assert tick(now=T0 + minutes(60)).counts == {("retarget", "retargeted"): 1}
    assert not Message.objects.exists()


def test_global_privacy_control_keeps_a_person_out_of_audiences(site):
    make_campaign(site)
    track(site, "Product Added", gpc=True)
    assert tick(now=T0 + minutes(60)).counts == {("nothing", "gpc"): 1}
    assert not AudienceMember.objects.exists()


def test_withdrawn_email_consent_suppression_and_opting_out_stop_the_email(site):
    campaign = make_campaign(site)
    identify(site, anonymous_id="a", email="no@example.com", consent={"email": False}, at=T0)
    identify(site, anonymous_id="b", email="Gone@Example.com ", at=T0)
    Suppression.objects.create(
        site=site, email_hash=email_hash("gone@example.com"), reason="bounced"
    )
    identify(site, anonymous_id="c", email="left@example.com", at=T0)
    CampaignOptOut.objects.create(
        site=site, campaign=campaign, email_hash=email_hash("left@example.com")
    )
    for anonymous_id in "abc":
        track(site, "Product Added", anonymous_id=anonymous_id)

    result = tick(now=T0 + minutes(60))

    assert result.counts == {
        ("retarget", "no_email_consent"): 1,
        ("retarget", "suppressed"): 1,
        ("retarget", "opted_out"): 1,
    }
    assert not Message.objects.exists()


def test_holdout_people_get_a_control_decision_and_nothing_else(site):
    campaign = make_campaign(site, holdout_percent=50)
    events = []
    for n in range(40):
        email = f"v{n}@example.com"
        events += [
            envelope(site, type="identify", anonymous_id=f"v{n}", at=T0 - minutes(1),
                     traits={"email": email}, email=email, email_verified=True),
            envelope(site, "Product Added", anonymous_id=f"v{n}"),
        ]  # fmt: skip
    store_events(events, now=T0)
    held = Enrollment.objects.filter(campaign=campaign, is_holdout=True)
    assert 0 < held.count() < 40

    tick(now=T0 + minutes(60))

    assert set(Decision.objects.filter(enrollment__in=held).values_list("outcome", "reason")) == {
        ("control", "holdout")
    }
    assert not Message.objects.filter(enrollment__in=held).exists()
    assert not AudienceMember.objects.filter(profile__enrollments__in=held).exists()
    assert set(held.values_list("status", flat=True)) == {"control"}
    assert Message.objects.count() == 40 - held.count()


def test_the_frequency_cap_reschedules_to_when_the_oldest_email_ages_out(site):
    SitePolicy.objects.create(site=site, email_cap_count=1, email_cap_days=1)
    first = make_campaign(site, name="first", trigger_event="Product Viewed", priority=1)
    second = make_campaign(site, name="second", trigger_event="Product Added", priority=2)
    identify(site, at=T0 - minutes(5))
    track(site, "Product Viewed")
    track(site, "Product Added", at=T0 + minutes(10))

    assert tick(now=T0 + minutes(60)).counts == {("email", "emailed"): 1}
    result = tick(now=T0 + minutes(70))

    assert result.counts == {("rescheduled", "frequency_cap"): 1}
    capped = Enrollment.objects.get(campaign=second)
    assert capped.due_at == T0 + minutes(60 + 24 * 60)
    assert Decision.objects.get(enrollment=capped).rescheduled_to == capped.due_at
    assert tick(now=T0 + minutes(60 + 24 * 60)).counts == {("email", "emailed"): 1}
    assert Message.objects.filter(campaign=first).count() == 1
    assert Message.objects.filter(campaign=second).count() == 1


def test_the_frequency_cap_counts_emails_decided_in_the_same_batch(site):
    SitePolicy.objects.create(site=site, email_cap_count=1, email_cap_days=1)
    make_campaign(site, name="first", trigger_event="Product Viewed", priority=1)
    make_campaign(site, name="second", trigger_event="Product Added", priority=2)
    identify(site, at=T0 - minutes(5))
    track(site, "Product Viewed")
    track(site, "Product Added")

    result = tick(now=T0 + minutes(60))

    assert result.counts == {("email", "emailed"): 1, ("rescheduled", "frequency_cap"): 1}
    assert Message.objects.get().campaign.name == "first"


def test_a_skipping_cap_policy_retargets_instead(site):
    SitePolicy.objects.create(
        site=site, email_cap_count=1, email_cap_days=1, over_cap_action="skip"
    )
    make_campaign(site, name="first", trigger_event="Product Viewed", priority=1)
    make_campaign(site, name="second", trigger_event="Product Added", priority=2)
    identify(site, at=T0 - minutes(5))
    track(site, "Product Viewed")
    track(site, "Product Added")
    assert tick(now=T0 + minutes(60)).counts == {
        ("email", "emailed"): 1,
        ("retarget", "frequency_cap"): 1,
    }


def test_quiet_hours_reschedule_to_the_morning_in_the_visitors_time_zone(site):
    make_campaign(site)
    # 20:30 in New York is 01:30 UTC; quiet hours there are 21:00–08:00 local.
    evening = T0.replace(day=28, hour=1, minute=30)
    identify(site, at=evening - minutes(5), timezone="America/New_York")
    track(site, "Product Added", at=evening)

    result = tick(now=evening + minutes(60))

    assert result.counts == {("rescheduled", "quiet_hours"): 1}
    morning = T0.replace(day=28, hour=13, minute=0)  # 08:00 EST
    assert Enrollment.objects.get().due_at == morning
    assert tick(now=morning).counts == {("email", "emailed"): 1}


def test_quiet_hours_fall_back_to_the_sites_time_zone(site):
    site.timezone = "Asia/Tokyo"
    site.save()
    make_campaign(site)
    identify(site, at=T0 - minutes(5))  # no time zone from the browser
    track(site, "Product Added")  # 10:00 UTC is 19:00 in Tokyo; the step is due at 20:00
    SitePolicy.objects.create(site=site, quiet_hours_start="19:30", quiet_hours_end="08:00")

    assert tick(now=T0 + minutes(60)).counts == {("rescheduled", "quiet_hours"): 1}
    assert Enrollment.objects.get().due_at == T0.replace(day=27, hour=23)  # 08:00 JST


def test_a_conversion_on_a_second_device_exits(site):
    campaign = make_campaign(site)
    identify(site, anonymous_id="laptop", user_id="u1", at=T0 - minutes(5))
    track(site, "Product Added", anonymous_id="laptop")
    # Later, on the phone: anonymous first, then the login merges it into the user.
    track(site, "Product Viewed", anonymous_id="phone", at=T0 + minutes(20))
    identify(site, anonymous_id="phone", user_id="u1", at=T0 + minutes(21))
    track(site, "Order Completed", anonymous_id="phone", at=T0 + minutes(25))

    enrollment = Enrollment.objects.get(campaign=campaign)
    assert (enrollment.status, enrollment.exit_reason) == ("exited", "converted")
    assert tick(now=T0 + minutes(60)).decided == 0
    assert not Message.objects.exists()


def test_a_merge_keeps_one_active_enrollment_per_campaign(site):
    campaign = make_campaign(site)
    identify(site, anonymous_id="laptop", user_id="u1", at=T0 - minutes(5))
    track(site, "Product Added", anonymous_id="laptop")
    track(site, "Product Added", anonymous_id="phone", at=T0 + minutes(10))
    assert Enrollment.objects.filter(campaign=campaign, status="active").count() == 2

    identify(site, anonymous_id="phone", user_id="u1", at=T0 + minutes(11))

    survivor = profile_of(site, "laptop")
    rows = Enrollment.objects.filter(campaign=campaign).order_by("enrolled_at")
    assert [(e.profile_id, e.status, e.exit_reason) for e in rows] == [
        (survivor.id, "active", ""),
        (survivor.id, "exited", "merged"),
    ]
    assert tick(now=T0 + minutes(60)).counts == {("email", "emailed"): 1}
    assert sorted(Decision.objects.values_list("profile_id", "outcome", "reason")) == [
        (survivor.id, "email", "emailed"),
        (survivor.id, "exit", "merged"),
    ]


def test_a_three_step_flow_sends_at_one_day_and_three_days(site):
    campaign = make_campaign(
        site,
        steps=[
            {"delay_minutes": 60},
            {"delay_minutes": 24 * 60},
            {"delay_minutes": 72 * 60},
        ],
    )
    identify(site, at=T0 - minutes(5))
    track(site, "Product Added")

    sent_at = []
    for hours in (1, 23, 24, 71, 72):
        if tick(now=T0 + minutes(hours * 60)).decided:
            sent_at.append(hours)

    assert sent_at == [1, 24, 72]
    enrollment = Enrollment.objects.get(campaign=campaign)
    assert decisions(enrollment) == [
        (0, "email", "emailed"),
        (1, "email", "emailed"),
        (2, "email", "emailed"),
    ]
    assert enrollment.status == "completed"
    assert list(Message.objects.order_by("position").values_list("position", flat=True)) == [
        0,
        1,
        2,
    ]


def test_a_step_delayed_after_the_previous_one_counts_from_its_decision(site):
    make_campaign(
        site,
        steps=[
            {"delay_minutes": 60},
            {"delay_minutes": 120, "delay_from": Step.DelayFrom.PREVIOUS},
        ],
    )
    identify(site, at=T0 - minutes(5))
    track(site, "Product Added")
    tick(now=T0 + minutes(90))  # a late tick: the first step is decided at 90 min
    assert Enrollment.objects.get().due_at == T0 + minutes(210)


def test_one_enrollment_per_person_however_many_triggers(site):
    campaign = make_campaign(site)
    store_events(
        [envelope(site, "Product Added", at=T0 + minutes(n)) for n in range(3)], now=T0 + minutes(3)
    )
    track(site, "Product Added", at=T0 + minutes(5))
    enrollment = Enrollment.objects.get(campaign=campaign)
    assert enrollment.enrolled_at == T0


def test_the_reentry_cooldown_keeps_a_finished_person_out(site):
    campaign = make_campaign(site, reentry_cooldown_hours=24)
    track(site, "Product Added")
    tick(now=T0 + minutes(60))
    track(site, "Product Added", at=T0 + minutes(120))
    assert Enrollment.objects.filter(campaign=campaign).count() == 1
    track(site, "Product Added", at=T0 + minutes(60 + 24 * 60 + 1))
    assert Enrollment.objects.filter(campaign=campaign).count() == 2


def test_trigger_and_audience_conditions_choose_who_enrolls(site):
    campaign = make_campaign(
        site,
        trigger_conditions=[{"property": "value", "op": ">=", "value": 50}],
        audience_conditions={"email": "verified"},
    )
    identify(site, anonymous_id="rich", email="r@example.com", at=T0 - minutes(5))
    identify(
        site, anonymous_id="anon-rich", email="x@example.com", verified=False, at=T0 - minutes(5)
    )
    track(site, "Product Added", anonymous_id="rich", properties={"value": "75.50"})
    track(site, "Product Added", anonymous_id="cheap", properties={"value": 20})
    track(site, "Product Added", anonymous_id="anon-rich", properties={"value": 80})

    enrolled = Enrollment.objects.filter(campaign=campaign)
    assert [e.profile_id for e in enrolled] == [profile_of(site, "rich").id]


def test_a_url_condition_reads_the_page_url_of_the_context(site):
    campaign = make_campaign(
        site,
        trigger_event="Page Viewed",
        trigger_conditions=[{"property": "url", "op": "contains", "value": "/PRICING"}],
    )
    store_events(
        [
            envelope(
                site,
                "",
                type="page",
                anonymous_id="a",
                properties={"url": "https://s.test/pricing"},
            ),
            envelope(
                site,
                "Signup Clicked",
                anonymous_id="b",
                context={"page": {"url": "https://s.test/pricing"}},
            ),
            envelope(
                site, "", type="page", anonymous_id="c", properties={"url": "https://s.test/blog"}
            ),
        ],
        now=T0,
    )
    assert [e.profile_id for e in Enrollment.objects.filter(campaign=campaign)] == [
        profile_of(site, "a").id
    ]


def test_paused_campaigns_hold_their_enrollments_and_ended_ones_exit(site):
    paused = make_campaign(site, name="paused")
    ended = make_campaign(site, name="ended", trigger_event="Product Viewed")
    track(site, "Product Added")
    track(site, "Product Viewed")
    paused.status = "paused"
    paused.save()
    ended.ends_at = T0 + minutes(30)
    ended.save()

    assert tick(now=T0 + minutes(60)).counts == {("exit", "campaign_ended"): 1}
    assert Enrollment.objects.get(campaign=paused).status == "active"
    paused.status = "active"
    paused.save()
    assert tick(now=T0 + minutes(61)).decided == 1


def test_a_draft_campaign_enrolls_no_one(site):
    make_campaign(site, status="draft")
    track(site, "Product Added")
    assert not Enrollment.objects.exists()


def test_an_old_trigger_event_enrolls_no_one(site):
    make_campaign(site)
    store_events([envelope(site, "Product Added", at=T0 - minutes(25 * 60))], now=T0)
    assert not Enrollment.objects.exists()


def test_converting_removes_the_person_from_audiences_that_drop_converters(site):
    keep = make_audience(site, name="keep", remove_on_conversion=False)
    drop = make_audience(site, name="drop")
    make_campaign(
        site, name="c1", audience=keep, steps=[{"delay_minutes": 60, "channel": "retarget_only"}]
    )
    make_campaign(
        site, name="c2", audience=drop, steps=[{"delay_minutes": 60, "channel": "retarget_only"}]
    )
    track(site, "Product Added")
    tick(now=T0 + minutes(60))
    assert AudienceMember.objects.filter(removed_at=None).count() == 2

    track(site, "Order Completed", at=T0 + minutes(90))

    current = AudienceMember.objects.filter(removed_at=None)
    assert [m.audience_id for m in current] == [keep.id]
    assert AudienceMember.objects.get(audience=drop).removal_reason == "converted"


def test_a_replayed_batch_enrolls_and_decides_no_one_twice(site):
    make_campaign(site)
    event = envelope(site, "Product Added")
    store_events([event], now=T0)
    store_events([event], now=T0)
    assert Enrollment.objects.count() == 1
    tick(now=T0 + minutes(60))
    tick(now=T0 + minutes(60))
    assert Decision.objects.count() == 1


def test_emails_sent_to_a_merged_profile_count_against_the_survivors_cap(site):
    SitePolicy.objects.create(site=site, email_cap_count=1, email_cap_days=1)
    make_campaign(site, name="first", trigger_event="Product Viewed")
    second = make_campaign(site, name="second", trigger_event="Checkout Started")
    identify(site, anonymous_id="phone", at=T0 - minutes(5))  # known only on the phone
    track(site, "Product Viewed", anonymous_id="phone")
    assert tick(now=T0 + minutes(60)).counts == {("email", "emailed"): 1}

    identify(site, anonymous_id="laptop", user_id="u1", at=T0 + minutes(70))
    track(site, "Checkout Started", anonymous_id="laptop", at=T0 + minutes(71))
    identify(site, anonymous_id="phone", user_id="u1", at=T0 + minutes(72))  # phone merges in

    assert tick(now=T0 + minutes(131)).counts == {("rescheduled", "frequency_cap"): 1}
    assert Enrollment.objects.get(campaign=second).due_at == T0 + minutes(60 + 24 * 60)


def test_a_campaign_with_broken_conditions_neither_enrolls_nor_blocks_the_events(site):
    broken = make_campaign(site, name="broken", trigger_conditions=[{"property": "value"}])
    fine = make_campaign(site, name="fine")
    track(site, "Product Added")
    assert Enrollment.objects.filter(campaign=fine).count() == 1
    assert not Enrollment.objects.filter(campaign=broken).exists()


def test_a_funnel_stage_condition_keeps_people_who_carted_out_of_browse_abandonment(site):
    browse = make_campaign(
        site, name="browse", trigger_event="Product Viewed", audience_conditions={"stage": "browse"}
    )
    track(site, "Product Viewed", anonymous_id="looker")
    track(site, "Product Added", anonymous_id="carter", at=T0 - minutes(10))
    track(site, "Product Viewed", anonymous_id="carter")
    track(site, "Product Added", anonymous_id="old-carter", at=T0 - minutes(31 * 24 * 60))
    track(site, "Product Viewed", anonymous_id="old-carter")

    enrolled = set(Enrollment.objects.filter(campaign=browse).values_list("profile_id", flat=True))
    assert enrolled == {profile_of(site, "looker").id, profile_of(site, "old-carter").id}
