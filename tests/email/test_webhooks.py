"""ESP webhooks, posted to Anymail's real URLs with payloads from the ESPs' docs.

The Postmark bounce is Postmark's documented bounce webhook body; the Mailgun
complaint is Mailgun's documented "complained" event (signed like Mailgun signs
it). Only the ids that tie them to a Message we sent are ours.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json

import pytest
from django.test import override_settings

from campaigns.models import EmailEvent, Message, Suppression
from campaigns.models.email import email_hash
from tests.email.conftest import T0, make_campaign, queue_messages

pytestmark = pytest.mark.django_db

SECRET = "hooks:correct-horse-battery"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}

POSTMARK_BOUNCE = {
    "RecordType": "Bounce",
    "MessageStream": "outbound",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "Tag": "Test",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"a_key": "a_value", "b_key": "b_value"},
    "ServerID": 23,
    "Description": "The server was unable to deliver your message (ex: unknown user, "
    "mailbox not found).",
    "Details": "Test bounce details",
    "Email": "john@example.com",
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "Test subject",
    "Content": "<Full dump of bounce>",
}

MAILGUN_COMPLAINT = {
    "signature": {
        "timestamp": "1529006854",
        "token": "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
        "signature": "",
    },
    "event-data": {
        "id": "-Agny091SquKnsrW2NEKUA",
        "timestamp": 1521233123.501324,
        "log-level": "warn",
        "event": "complained",
        "envelope": {"sending-ip": "173.193.210.33"},
        "flags": {"is-test-mode": False},
        "message": {
            "headers": {
                "to": "Alice <alice@example.com>",
                "message-id": "20110215055645.25246.63817@example.org",
                "from": "Bob <bob@example.org>",
                "subject": "Test complained webhook",
            },
            "attachments": [],
            "size": 111,
        },
        "recipient": "alice@example.com",
        "campaigns": [],
        "tags": ["my_tag_1", "my_tag_2"],
        "user-variables": {"my_var_1": "Mailgun Variable #1", "my-var-2": "awesome"},
    },
}


def basic_auth(credentials: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


def sent_message(to_email: str, esp_id: str) -> Message:
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)
    Message.objects.filter(pk=message.pk).update(
        to_email=to_email, status="sent", sent_at=T0, esp_message_id=esp_id
    )
    message.refresh_from_db()
    return message


def postmark_bounce_for(message: Message) -> dict:
    payload = copy.deepcopy(POSTMARK_BOUNCE)
    payload["MessageID"] = message.esp_message_id
    return payload


def signed_mailgun_complaint_for(message: Message, key: str = MAILGUN_KEY) -> dict:
    payload = copy.deepcopy(MAILGUN_COMPLAINT)
    # What Anymail sent as metadata comes back as Mailgun user-variables.
    payload["event-data"]["user-variables"]["message_id"] = str(message.pk)
    block = payload["signature"]
    block["signature"] = hmac.new(
        key.encode(), (block["timestamp"] + block["token"]).encode(), hashlib.sha256
    ).hexdigest()
    return payload


@override_settings(ANYMAIL=ANYMAIL)
def test_a_postmark_hard_bounce_with_the_secret_suppresses_the_address(client):
    message = sent_message("john@example.com", "883953f4-6105-42a2-a16a-77a8eac79483")

    response = client.post(
        "/anymail/postmark/tracking/", data=json.dumps(postmark_bounce_for(message)),
        content_type="application/json", **basic_auth(SECRET),
    )  # fmt: skip

    assert response.status_code == 200
    suppression = Suppression.objects.get()
    assert (suppression.site_id, suppression.reason) == (message.site_id, "bounced")
    assert suppression.email_hash == email_hash("john@example.com")
    message.refresh_from_db()
    assert message.status == "bounced"
    assert EmailEvent.objects.get().event_key == "4323372036854775807"


@override_settings(ANYMAIL=ANYMAIL)
@pytest.mark.parametrize("credentials", [None, "hooks:wrong-password", "intruder:" + SECRET])
def test_a_postmark_bounce_without_the_secret_is_refused_and_writes_nothing(client, credentials):
    message = sent_message("john@example.com", "883953f4-6105-42a2-a16a-77a8eac79483")
    auth = basic_auth(credentials) if credentials else {}

    response = client.post(
        "/anymail/postmark/tracking/", data=json.dumps(postmark_bounce_for(message)),
        content_type="application/json", **auth,
    )  # fmt: skip

    assert response.status_code == 400
    assert not Suppression.objects.exists()
    assert not EmailEvent.objects.exists()
    message.refresh_from_db()
    assert message.status == "sent"


@override_settings(ANYMAIL=ANYMAIL)
def test_a_redelivered_webhook_is_applied_once(client):
    message = sent_message("john@example.com", "883953f4-6105-42a2-a16a-77a8eac79483")
    body = json.dumps(postmark_bounce_for(message))

    for _ in range(3):
        response = client.post(
            "/anymail/postmark/tracking/", data=body, content_type="application/json",
            **basic_auth(SECRET),
        )  # fmt: skip
        assert response.status_code == 200

    assert EmailEvent.objects.count() == 1
    assert Suppression.objects.count() == 1


@override_settings(ANYMAIL=ANYMAIL)
def test_a_postmark_soft_bounce_does_not_suppress(client):
    message = sent_message("john@example.com", "883953f4-6105-42a2-a16a-77a8eac79483")
    payload = postmark_bounce_for(message) | {"Type": "SoftBounce", "TypeCode": 4096}

    response = client.post(
        "/anymail/postmark/tracking/", data=json.dumps(payload),
        content_type="application/json", **basic_auth(SECRET),
    )  # fmt: skip

    assert response.status_code == 200
    assert not Suppression.objects.exists()


@override_settings(ANYMAIL=ANYMAIL)
def test_a_signed_mailgun_complaint_suppresses_the_address(client):
    message = sent_message("alice@example.com", "20110215055645.25246.63817@example.org")

    response = client.post(
        "/anymail/mailgun/tracking/", data=json.dumps(signed_mailgun_complaint_for(message)),
        content_type="application/json", **basic_auth(SECRET),
    )  # fmt: skip

    assert response.status_code == 200
    suppression = Suppression.objects.get()
    assert (suppression.site_id, suppression.reason) == (message.site_id, "complained")
    message.refresh_from_db()
    assert message.status == "complained"


@override_settings(ANYMAIL=ANYMAIL)
def test_a_mailgun_complaint_with_a_forged_signature_is_refused(client):
    message = sent_message("alice@example.com", "20110215055645.25246.63817@example.org")
    forged = signed_mailgun_complaint_for(message, key="key-not-the-real-one")

    response = client.post(
        "/anymail/mailgun/tracking/", data=json.dumps(forged),
        content_type="application/json", **basic_auth(SECRET),
    )  # fmt: skip

    assert response.status_code == 400
    assert not Suppression.objects.exists()
    assert not EmailEvent.objects.exists()


@override_settings(ANYMAIL=ANYMAIL)
def test_engagement_moves_the_status_forward_but_never_back(client):
    message = sent_message("recipient@example.com", "f4830d10-9c35-4f0c-bca3-3d9b459821f8")
    base = {"MessageID": message.esp_message_id, "Recipient": "recipient@example.com"}
    click = base | {"RecordType": "Click", "OriginalLink": "https://example.com/click/me",
                    "ReceivedAt": "2026-03-02T11:00:00Z"}  # fmt: skip
    opened = base | {"RecordType": "Open", "FirstOpen": True, "ReceivedAt": "2026-03-02T10:30:00Z"}
    delivered = base | {"RecordType": "Delivery", "DeliveredAt": "2026-03-02T10:01:00Z"}

    for event in (click, opened, delivered):
        response = client.post(
            "/anymail/postmark/tracking/", data=json.dumps(event),
            content_type="application/json", **basic_auth(SECRET),
        )  # fmt: skip
        assert response.status_code == 200

    message.refresh_from_db()
    assert message.status == "clicked"
    assert message.clicked_at.isoformat() == "2026-03-02T11:00:00+00:00"
    assert message.opened_at.isoformat() == "2026-03-02T10:30:00+00:00"
    assert message.delivered_at.isoformat() == "2026-03-02T10:01:00+00:00"
    assert EmailEvent.objects.count() == 3


def test_without_a_webhook_secret_outside_debug_the_settings_refuse_to_start():
    from tests.test_settings import run_manage

    result = run_manage(
        "check",
        DEBUG="0",
        SECRET_KEY="x" * 50,
        FIELD_ENCRYPTION_KEY="k" * 40,
        ANYMAIL_WEBHOOK_SECRET="",
    )
    assert result.returncode == 2
    assert "ANYMAIL_WEBHOOK_SECRET must be set when DEBUG is off" in result.stderr
