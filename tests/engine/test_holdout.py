"""The holdout group over many people: its share, its stability, and that it gets nothing."""

from __future__ import annotations

import pytest

from campaigns.engine.rules import holdout_bucket
from campaigns.engine.tick import tick
from campaigns.models import Decision, Enrollment, Message
from tests.engine.conftest import T0, envelope, make_campaign, minutes
from tests.factories import make_site
from tracking.storage import store_events

pytestmark = pytest.mark.django_db

PEOPLE = 10_000


def test_the_holdout_share_over_ten_thousand_visitors_is_within_tolerance():
    site = make_site()
    campaign = make_campaign(site, holdout_percent=10, steps=[{"delay_minutes": 60}])
    store_events(
        [envelope(site, "Product Added", anonymous_id=f"v{n}") for n in range(PEOPLE)], now=T0
    )

    enrollments = Enrollment.objects.filter(campaign=campaign)
    assert enrollments.count() == PEOPLE
    held = enrollments.filter(is_holdout=True).count()
    # Binomial(10,000, 0.1): standard deviation 30; four of them either side.
    assert 880 <= held <= 1120
    # Exactly the people the documented function puts below 10.
    assert all(
        (holdout_bucket(campaign.id, profile_id) < 10) == is_holdout
        for profile_id, is_holdout in enrollments.values_list("profile_id", "is_holdout")
    )

    tick(now=T0 + minutes(60), batch_size=2_000)

    control = Decision.objects.filter(campaign=campaign, outcome="control")
    assert control.count() == held
    assert not control.exclude(reason="holdout").exists()
    assert not Message.objects.filter(enrollment__is_holdout=True).exists()
    assert Decision.objects.filter(campaign=campaign).count() == PEOPLE
