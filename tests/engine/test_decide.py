"""The pure decision (campaigns.engine.rules): facts and a clock in, an outcome out. No database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

from campaigns.engine.rules import (
    Facts,
    NextStep,
    Policy,
    cap_clears_at,
    decide,
    decide_batch,
    holdout_bucket,
    quiet_hours_end,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def facts(**fields) -> Facts:
    base = Facts(
        enrollment_id=1,
        site_id=1,
        campaign_id=7,
        profile_id=42,
        position=0,
        enrolled_at=NOW - timedelta(hours=1),
        step_id=100,
        template_id=5,
        audience_id=9,
        email="ann@example.com",
        email_verified=True,
        policy=Policy(quiet_hours_enabled=False),
    )
    return replace(base, **fields)


def test_a_verified_consenting_person_is_emailed_and_finishes_on_the_last_step():
    outcome = decide(facts(), NOW)
    assert (outcome.outcome, outcome.reason, outcome.status, outcome.finished) == (
        "email",
        "emailed",
        "completed",
        True,
    )


def test_the_next_step_is_due_after_the_trigger_or_after_this_decision():
    after_trigger = decide(facts(next_step=NextStep(3, 24 * 60, "trigger")), NOW)
    assert (after_trigger.next_position, after_trigger.due_at) == (3, NOW + timedelta(hours=23))
    after_previous = decide(facts(next_step=NextStep(3, 24 * 60, "previous")), NOW)
    assert after_previous.due_at == NOW + timedelta(hours=24)
    assert after_previous.status == "active" and not after_previous.finished


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"email": None}, "no_verified_email"),
        ({"email_verified": False}, "no_verified_email"),
        ({"consent": {"email": False}}, "no_email_consent"),
        ({"suppressed": True}, "suppressed"),
        ({"opted_out": True}, "opted_out"),
        ({"template_id": None}, "no_template"),
    ],
)
def test_a_person_who_may_not_be_emailed_is_retargeted_with_the_reason(fields, reason):
    outcome = decide(facts(**fields), NOW)
    assert (outcome.outcome, outcome.reason) == ("retarget", reason)


def test_unknown_email_consent_does_not_block_a_verified_address():
    assert decide(facts(consent={"analytics": True}), NOW).outcome == "email"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"gpc": True}, "gpc"),
        ({"consent": {"advertising": False}}, "no_ad_consent"),
        ({"audience_id": None}, "no_audience"),
    ],
)
def test_retargeting_stops_at_gpc_withdrawn_ad_consent_or_no_audience(fields, reason):
    outcome = decide(facts(email=None, **fields), NOW)
    assert (outcome.outcome, outcome.reason) == ("nothing", reason)


def test_email_only_never_retargets_and_retarget_only_never_emails():
    email_only = decide(facts(email=None, channel="email_only"), NOW)
    assert (email_only.outcome, email_only.reason) == ("nothing", "no_verified_email")
    retarget_only = decide(facts(channel="retarget_only"), NOW)
    assert (retarget_only.outcome, retarget_only.reason) == ("retarget", "retargeted")


def test_exits_come_before_everything_else():
    assert decide(facts(converted=True, is_holdout=True), NOW).reason == "converted"
    ended = decide(facts(campaign_status="ended", converted=True), NOW)
    assert (ended.outcome, ended.reason, ended.status) == ("exit", "campaign_ended", "exited")
    assert decide(facts(campaign_ends_at=NOW), NOW).reason == "campaign_ended"
    assert decide(facts(step_id=None), NOW).reason == "step_removed"


def test_a_holdout_person_gets_control_and_finishes_as_control():
    outcome = decide(facts(is_holdout=True), NOW)
    assert (outcome.outcome, outcome.reason, outcome.status) == ("control", "holdout", "control")


def test_the_site_cap_reschedules_to_when_the_oldest_counted_email_ages_out():
    sent = [(NOW - timedelta(days=d), 1) for d in (6, 5, 1)]
    outcome = decide(facts(recent_emails=sent), NOW)
    assert (outcome.outcome, outcome.reason) == ("rescheduled", "frequency_cap")
    assert outcome.due_at == NOW + timedelta(days=1)  # the 6-day-old one leaves the 7-day window
    assert outcome.rescheduled_to == outcome.due_at
    assert outcome.next_position == 0 and outcome.status == "active"


def test_a_campaign_cap_counts_only_its_own_emails():
    sent = [(NOW - timedelta(hours=2), 7), (NOW - timedelta(hours=1), 8)]
    capped = facts(recent_emails=sent, campaign_cap_count=1, campaign_cap_days=1)
    assert decide(capped, NOW).due_at == NOW + timedelta(hours=22)
    assert decide(replace(capped, campaign_id=9), NOW).outcome == "email"


def test_a_skipping_policy_retargets_instead_of_rescheduling():
    policy = Policy(email_cap_count=1, over_cap_action="skip", quiet_hours_enabled=False)
    outcome = decide(facts(policy=policy, recent_emails=[(NOW, 1)]), NOW)
    assert (outcome.outcome, outcome.reason) == ("retarget", "frequency_cap")


def test_a_cap_of_zero_means_no_cap():
    assert cap_clears_at([NOW] * 10, NOW, 0, 7) is None


def test_quiet_hours_that_wrap_midnight_end_the_next_morning_local_time():
    berlin_23h = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)
    assert quiet_hours_end(berlin_23h, "Europe/Berlin", time(21), time(8)) == datetime(
        2026, 11, 28, 7, 0, tzinfo=UTC
    )
    berlin_3h = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    assert quiet_hours_end(berlin_3h, "Europe/Berlin", time(21), time(8)) == datetime(
        2026, 11, 28, 7, 0, tzinfo=UTC
    )
    assert quiet_hours_end(NOW, "Europe/Berlin", time(21), time(8)) is None
    assert quiet_hours_end(NOW, "Europe/Berlin", time(9), time(9)) is None


def test_quiet_hours_within_one_day_and_an_unknown_zone_falling_back_to_utc():
    assert quiet_hours_end(NOW, "Not/AZone", time(12), time(14)) == NOW + timedelta(hours=2)


def test_quiet_hours_reschedule_a_mailable_person():
    outcome = decide(facts(policy=Policy(), timezone="Asia/Tokyo"), NOW)  # 21:00 in Tokyo
    assert (outcome.outcome, outcome.reason) == ("rescheduled", "quiet_hours")
    assert outcome.due_at == datetime(2026, 11, 27, 23, 0, tzinfo=UTC)


def test_a_batch_counts_its_own_emails_against_caps_in_priority_order():
    policy = Policy(email_cap_count=1, quiet_hours_enabled=False)
    low = facts(enrollment_id=1, campaign_id=1, campaign_priority=50, policy=policy)
    high = facts(enrollment_id=2, campaign_id=2, campaign_priority=10, policy=policy)
    other_person = facts(enrollment_id=3, profile_id=43, policy=policy)

    outcomes = decide_batch([low, high, other_person], NOW)

    assert [o.outcome for o in outcomes] == ["rescheduled", "email", "email"]


def test_the_holdout_bucket_is_stable_and_spread_evenly():
    assert holdout_bucket(3, 1234) == holdout_bucket(3, 1234)
    buckets = [holdout_bucket(1, p) for p in range(20_000)]
    share = sum(b < 10 for b in buckets) / len(buckets)
    assert 0.09 < share < 0.11
    assert [holdout_bucket(1, p) for p in range(50)] != [holdout_bucket(2, p) for p in range(50)]
