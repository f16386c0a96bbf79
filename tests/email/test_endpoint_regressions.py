"""Inputs the email fuzzers (test_fuzz_email_endpoints.py, test_email_endpoint_limits.py)
found mishandled, each pinned with what it got before the fix.

- Anymail's parsers let KeyError/TypeError escape on a payload of the wrong shape:
  a 500, which ESPs retry for days.
- A parsed event with a non-string recipient, a NUL character or a non-ASCII
  digit in the metadata reached our receiver and broke it: a 500.
- Amazon SES's webhook was mounted without boto3, and MailerSend's without its
  signing secret: a 500 on every call. Inbound-mail webhooks were mounted too.
  (SES's now answers 501 naming the `ses` extra when boto3 is missing.)
- A one-click unsubscribe POST whose multipart body did not parse was a 400, and
  the person stayed subscribed.
- The unsubscribe endpoint read a body of any size to its end (a 200 MB
  multipart POST was a 200; its parts spooled to disk).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from django.test import override_settings

from campaigns.email.rendering import UNSUBSCRIBE_SALT, message_token
from campaigns.models import EmailEvent, Suppression
from tests.email.conftest import sent_message

pytestmark = pytest.mark.django_db

SECRET = "hooks:correct-horse-battery"
ANYMAIL = {"WEBHOOK_SECRET": [SECRET], "MAILGUN_WEBHOOK_SIGNING_KEY": "key-x"}
# Mailgun's signature block, correctly signed with the key above, and nothing else.
SIGNED = {
    "timestamp": "1529006854",
    "token": "t",
    "signature": hmac.new(b"key-x", b"1529006854t", hashlib.sha256).hexdigest(),
}
AUTH = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(SECRET.encode()).decode()}


@pytest.fixture
def message():
    return sent_message()


def post_json(client, path: str, payload) -> object:
    return client.post(path, json.dumps(payload), content_type="application/json", **AUTH)


@override_settings(ANYMAIL=ANYMAIL)
@pytest.mark.parametrize(
    ("esp", "payload", "problem"),
    [
        ("postmark", None, "TypeError"),  # was 500: 'NoneType' object is not subscriptable
        ("mailgun", {"signature": SIGNED}, "KeyError"),  # was 500: KeyError 'event-data'
        ("sendgrid", {"event": "bounce"}, "TypeError"),  # an object, not SendGrid's array
    ],
)
def test_a_payload_of_the_wrong_shape_is_a_400_naming_the_body(client, esp, payload, problem):
    response = post_json(client, f"/anymail/{esp}/tracking/", payload)
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "body" and "tracking webhook payload" in body["error"]
    assert problem in body["error"]


@override_settings(ANYMAIL=ANYMAIL)
def test_a_postmark_click_whose_recipient_is_not_a_string_is_stored_without_it(client, message):
    # Was a 500: TypeError in our receiver, slicing `True`.
    response = post_json(client, "/anymail/postmark/tracking/", {
        "RecordType": "Click", "MessageID": "esp-1", "Recipient": True,
        "OriginalLink": "https://example.com/", "ReceivedAt": "2026-03-02T11:00:00Z",
    })  # fmt: skip
    assert response.status_code == 200
    event = EmailEvent.objects.get()
    assert (event.message_id, event.recipient) == (message.pk, "")


@override_settings(ANYMAIL=ANYMAIL)
def test_nul_characters_in_a_bounce_never_reach_postgresql(client, message):
    # Was a 500: psycopg2 refuses strings with NUL characters.
    response = post_json(client, "/anymail/postmark/tracking/", {
        "RecordType": "Bounce", "ID": "7\u0000", "Type": "HardBounce", "MessageID": "esp-1",
        "Email": "john\u0000@example.com", "BouncedAt": "2019-11-05T16:33:54Z",
        "Description": "no\u0000such user", "Metadata": {"message_id": str(message.pk)},
    })  # fmt: skip
    assert response.status_code == 200
    event = EmailEvent.objects.get()
    assert (event.event_key, event.recipient) == ("7", "john@example.com")
    assert Suppression.objects.get().reason == "bounced"


@override_settings(ANYMAIL=ANYMAIL)
def test_a_metadata_message_id_of_unicode_digits_is_ignored(client, message):
    # Was a 500: "²".isdigit() is true, but int("²") raises.
    response = post_json(client, "/anymail/postmark/tracking/", {
        "RecordType": "Delivery", "MessageID": "esp-1", "Recipient": "john@example.com",
        "DeliveredAt": "2026-03-02T10:01:00Z", "Metadata": {"message_id": "²"},
    })  # fmt: skip
    assert response.status_code == 200
    assert EmailEvent.objects.get().message_id == message.pk  # found by the ESP's id instead


@override_settings(ANYMAIL=ANYMAIL)
def test_webhooks_that_cannot_work_here_are_not_mounted_or_say_why(client):
    # Amazon SES's with boto3 missing answers 501 naming the extra:
    # tests/email/test_esp_settings.py (boto3 is a dev dependency, so it is here).
    assert post_json(client, "/anymail/postmark/inbound/", {}).status_code == 404
    response = post_json(client, "/anymail/mailersend/tracking/", {})
    assert response.status_code == 404
    assert "MAILERSEND_SIGNING_SECRET" in response.json()["error"]


def test_a_one_click_post_with_a_broken_multipart_body_still_unsubscribes(client, message):
    token = message_token(message.pk, UNSUBSCRIBE_SALT)
    response = client.post(
        f"/email/unsubscribe/{token}/", b"\x00", content_type="multipart/form-data"
    )
    assert response.status_code == 200
    assert Suppression.objects.get().reason == "unsubscribed"


def test_an_unsubscribe_body_over_64_kib_is_a_413_and_unsubscribes_nobody(client, message):
    token = message_token(message.pk, UNSUBSCRIBE_SALT)
    body = b"List-Unsubscribe=One-Click&" + b"x" * 64 * 1024
    response = client.post(
        f"/email/unsubscribe/{token}/", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    assert response.json()["field"] == "body"
    assert not Suppression.objects.exists()
