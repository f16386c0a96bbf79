"""Between the engine's decision and the send, the person may change their mind.

Each test lets the engine decide an email (events stored → enrollment → tick →
a queued Message), then changes something through the path a real person or
operator would use, then runs the real send task against Anymail's test backend.
The email must not go out, the Message must say why, and sending again must
neither send it nor change that record.
"""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.mail import get_connection

from campaigns.email import sending
from campaigns.email.rendering import UNSUBSCRIBE_SALT, message_token
from campaigns.engine.tick import tick
from campaigns.models import Message, Suppression
from campaigns.models.email import email_hash
from campaigns.people import privacy
from tests.engine.conftest import T0, identify, make_campaign, minutes, profile_of, track
from tests.factories import make_site
from tracking.models import Profile

pytestmark = pytest.mark.django_db

ANYMAIL_TEST = "anymail.backends.test.EmailBackend"
DECIDED = T0 + minutes(60)
SEND_AT = DECIDED + minutes(1)


@pytest.fixture(autouse=True)
def _clean_rate_limits(redis_client):
    """The send rate limit counts in the test Redis DB (flushed by redis_client)."""


@pytest.fixture
def site():
    return make_site()


@pytest.fixture
def queued(site) -> Message:
    """An email the engine decided for ann@example.com, not yet sent."""
    make_campaign(site)
    identify(site, email="ann@example.com", at=T0 - minutes(5), consent={"email": True})
    track(site, "Product Added", properties={"value": 30})
    assert tick(now=DECIDED).counts == {("email", "emailed"): 1}
    return Message.objects.get(status="queued")


def send(message: Message) -> str:
    return sending.send_one(message.pk, clock=lambda: SEND_AT, backend=get_connection(ANYMAIL_TEST))


def assert_not_sent(message: Message, reason: str) -> None:
    assert send(message) == "suppressed"
    message.refresh_from_db()
    assert (message.status, message.error) == ("suppressed", reason)
    # A second send task, or the periodic run, leaves it as it is.
    assert send(message) == "skipped"
    report = sending.send_queued(clock=lambda: SEND_AT, backend=get_connection(ANYMAIL_TEST))
    assert report.total == 0
    message.refresh_from_db()
    assert (message.status, message.error) == ("suppressed", reason)
    assert mail.outbox == []


def test_the_email_goes_out_when_nothing_changed(queued):
    assert send(queued) == "sent"
    assert [e.to for e in mail.outbox] == [["ann@example.com"]]


def test_withdrawing_email_consent_after_the_decision_stops_it(site, queued):
    identify(site, email="ann@example.com", at=DECIDED, consent={"email": False})
    assert_not_sent(queued, "suppressed: email consent withdrawn")


def test_withdrawing_consent_on_another_browser_that_was_merged_stops_it(site, queued):
    # The person logs in on a phone and declines there: the phone's profile is
    # merged into (or from) the one the message names; consent follows the survivor.
    identify(site, anonymous_id="phone", email="ann@example.com", user_id="u-ann", at=DECIDED)
    identify(site, anonymous_id="anon-1", email="ann@example.com", user_id="u-ann", at=DECIDED)
    survivor = profile_of(site, "phone")
    identify(site, anonymous_id="phone", email="ann@example.com", user_id="u-ann",
             at=DECIDED + minutes(0.5), consent={"email": False})  # fmt: skip
    survivor.refresh_from_db()
    assert survivor.consent == {"email": False}
    assert_not_sent(queued, "suppressed: email consent withdrawn")


def test_unsubscribing_through_an_earlier_email_stops_it(client, queued):
    earlier = Message.objects.create(site=queued.site, to_email="ann@example.com", status="sent")
    token = message_token(earlier.pk, UNSUBSCRIBE_SALT)
    response = client.post(f"/email/unsubscribe/{token}/", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert_not_sent(queued, "suppressed: unsubscribed")


def test_a_suppression_added_after_the_decision_stops_it(queued):
    Suppression.objects.create(
        site=queued.site, email_hash=email_hash("ANN@example.com"), reason="complained"
    )
    assert_not_sent(queued, "suppressed: complained")


def test_erasing_the_person_after_the_decision_stops_it(site, queued):
    report = privacy.forget(site, email="ann@example.com", now=DECIDED)
    assert report.profiles == 1 and report.messages_anonymised == 1
    assert_not_sent(queued, "suppressed: person erased")


def test_an_address_that_stopped_being_verified_is_not_mailed(queued):
    Profile.objects.filter(pk=queued.profile_id).update(email_verified=False)
    assert_not_sent(queued, "suppressed: email no longer verified")


def test_an_anonymised_profile_is_not_mailed(queued):
    privacy.anonymise_inactive_profiles(now=SEND_AT + minutes(60 * 24 * 2), inactive_days=1)
    assert_not_sent(queued, "suppressed: email no longer verified")


def test_a_person_whose_verified_address_changed_is_not_mailed_at_the_old_one(site, queued):
    identify(site, email="ann.new@example.com", at=DECIDED)  # a verified identify
    assert profile_of(site).email == "ann.new@example.com"
    assert_not_sent(queued, "suppressed: the person's verified email changed")
