"""The periodic task is the engine's tick at the current time, nothing more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from campaigns.models import Decision
from campaigns.tasks.engine import tick
from tests.engine.conftest import make_campaign, track
from tests.factories import make_site

pytestmark = pytest.mark.django_db


def test_the_periodic_task_decides_what_is_due_now():
    site = make_site()
    make_campaign(site)
    track(site, "Product Added", at=datetime.now(UTC) - timedelta(hours=2))

    assert tick.run() == 1
    assert Decision.objects.get().reason == "no_verified_email"


def test_beat_runs_the_task_every_few_seconds():
    entry = settings.CELERY_BEAT_SCHEDULE["engine-tick"]
    assert entry["task"] == tick.name
    assert entry["schedule"] == settings.ENGINE_TICK_SECONDS <= 30


def test_the_tick_command_prints_counts_per_outcome_and_reason():
    from io import StringIO

    from django.core.management import call_command

    from tests.engine.conftest import T0, minutes

    site = make_site()
    make_campaign(site)
    track(site, "Product Added")
    out = StringIO()

    call_command("engine", "tick", "--now", (T0 + minutes(60)).isoformat(), stdout=out)

    assert out.getvalue().splitlines() == [
        "tick at 2026-11-27T11:00:00+00:00: 1 decided",
        "  retarget     no_verified_email    1",
    ]


def test_the_tick_command_refuses_a_time_without_a_zone():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="needs a time zone"):
        call_command("engine", "tick", "--now", "2026-11-27T11:00:00")
