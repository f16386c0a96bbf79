"""The admin shows the outbox's queue and current send rate (outbox and email settings)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from campaigns.email import pacing
from campaigns.models import EmailSettings, Message
from tests.email.conftest import make_campaign, queue_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(client, redis_client):
    """Send counters and pauses live in the test Redis DB (flushed by redis_client)."""
    pacing.reset()
    user = get_user_model().objects.create_superuser("mia", "mia@shop.test", "pw")
    client.force_login(user)
    yield client
    pacing.reset()


def test_the_outbox_shows_the_queue_and_the_emails_sent_in_the_last_minute(marketer):
    campaign, step, _ = make_campaign()
    first, _due, later = queue_messages(campaign, step, 3)
    now = timezone.now()
    Message.objects.filter(pk=later.pk).update(not_before=now + timedelta(hours=1))
    Message.objects.filter(pk=first.pk).update(status="sending")
    pacing.count_sent({campaign.site_id: 42}, now)

    response = marketer.get("/admin/campaigns/message/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "2 queued (1 due now) · 1 sending · 42 sent in the last minute" in page


def test_the_email_settings_list_shows_each_sites_rate_queue_and_pause(marketer):
    campaign, step, _ = make_campaign()
    EmailSettings.objects.create(site=campaign.site, sends_per_minute=100)
    queue_messages(campaign, step, 4)
    now = timezone.now()
    pacing.count_sent({campaign.site_id: 7}, now)
    pacing.pause_site(campaign.site_id, now + timedelta(seconds=30))

    response = marketer.get("/admin/campaigns/emailsettings/")

    assert response.status_code == 200
    page = response.content.decode()
    assert '<td class="field-sent_last_minute">7</td>' in page
    assert '<td class="field-queued">4</td>' in page
    until = (now + timedelta(seconds=30)).strftime("%H:%M:%S UTC")
    assert f'<td class="field-paused_until">{until}</td>' in page
    assert "1 site(s) paused by the ESP (429)" in page


def test_a_huge_queue_is_counted_only_up_to_a_limit(marketer, monkeypatch):
    monkeypatch.setattr(pacing, "COUNT_UP_TO", 2)
    campaign, step, _ = make_campaign()
    EmailSettings.objects.create(site=campaign.site)
    queue_messages(campaign, step, 3)

    outbox = marketer.get("/admin/campaigns/message/").content.decode()
    settings_list = marketer.get("/admin/campaigns/emailsettings/").content.decode()

    assert "2+ queued (2+ due now)" in outbox
    assert '<td class="field-queued">2+</td>' in settings_list
