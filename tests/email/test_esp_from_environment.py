"""Each ESP sends a remarketing email from environment variables alone, and its
bounce and complaint webhooks suppress the address.

The variables an operator would put in `.env` are handed to a fresh
`manage.py` process; the email settings reengage/settings.py makes of them
(EMAIL_BACKEND, ANYMAIL typed, EMAIL_MAX_TAGS, …) and the start-up checks'
verdict come back, and the real send task runs with exactly those settings,
through Anymail's real backend (or Django's SMTP backend), to a local stand-in
of the ESP's API that checks each request against the ESP's documentation
(tests/email/esp_standins.py). The only variable that is not what production
sets is the API's base URL (ANYMAIL_<ESP>_API_URL, or boto3's endpoint_url for
Amazon SES), which points at the stand-in.

The webhooks are the ESPs' documented sample payloads (as Anymail's own test
suite has them), tied to the email just sent by its ESP message id or metadata,
posted to /anymail/<esp>/tracking/ with the basic-auth secret.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import pickle
import subprocess
import sys
import warnings

import pytest
from django.test import override_settings

from campaigns.models import Message, Suppression
from campaigns.models.email import email_hash
from campaigns.tasks.email import send_queued_email
from tests.email import esp_standins
from tests.email.conftest import make_campaign, queue_messages
from tests.factories import make_site
from tests.test_settings import ROOT

pytestmark = pytest.mark.django_db

SECRET = "hooks:correct-horse-battery"
EMAIL_SETTINGS = [
    "EMAIL_BACKEND", "ANYMAIL", "EMAIL_MAX_TAGS", "EMAIL_SEND_METADATA", "EMAIL_HOST",
    "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS", "EMAIL_USE_SSL",
    "DEFAULT_FROM_EMAIL",
]  # fmt: skip
READ_SETTINGS = f"""
import pickle
from django.conf import settings
from django.core.checks import run_checks
found = {{name: getattr(settings, name) for name in {EMAIL_SETTINGS!r}}}
found["checks"] = [f"{{m.id}}: {{m.msg}}" for m in run_checks() if m.id.startswith("reengage.")]
print("SETTINGS=" + pickle.dumps(found).hex())
"""


def email_variable(name: str) -> bool:
    return name.startswith(("EMAIL_", "ANYMAIL_")) or name == "DEFAULT_FROM_EMAIL"


def settings_from_environment(**env: str) -> dict:
    """The email settings reengage/settings.py makes of these variables alone (fresh
    process; email variables of the environment running the tests are left out)."""
    base = {k: v for k, v in os.environ.items() if not email_variable(k)}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", READ_SETTINGS], cwd=ROOT,
        env={**base, "REENGAGE_EMBEDDED_SERVICES": "0", "ANYMAIL_WEBHOOK_SECRET": SECRET, **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = [x for x in result.stdout.splitlines() if x.startswith("SETTINGS=")]
    # Our own child process's output (pickle keeps tuples, e.g. a (connect, read) timeout).
    return pickle.loads(bytes.fromhex(line.removeprefix("SETTINGS=")))  # noqa: S301


def send_one_email(settings: dict, site=None) -> Message:
    """The real periodic send task, with exactly the settings the environment gave."""
    campaign, step, _ = make_campaign(site)
    [message] = queue_messages(campaign, step)
    with override_settings(**settings), warnings.catch_warnings():
        # SendGrid's backend warns that Anymail no longer supports it officially.
        warnings.simplefilter("ignore")
        counts = send_queued_email()
    message.refresh_from_db()
    assert (counts, message.status, message.error) == ({"sent": 1}, "sent", "")
    return message


def basic_auth(credentials: str = SECRET) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


def assert_suppressed(message: Message, reason: str) -> None:
    suppression = Suppression.objects.get()
    assert (suppression.site_id, suppression.reason) == (message.site_id, reason)
    assert suppression.email_hash == email_hash(message.to_email)
    message.refresh_from_db()
    assert message.status == reason


@pytest.fixture
def standins():
    made = []

    def make(cls, *args):
        standin = cls(*args)
        made.append(standin)
        return standin

    yield make
    for standin in made:
        standin.close()


# --- Postmark -------------------------------------------------------------------------

POSTMARK_TOKEN = "f9e3c9d2-5a86-4a7b-9a4d-pm-server-token"
POSTMARK_BOUNCE = {  # Postmark's documented bounce webhook (and Anymail's test of it)
    "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807,
    "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "Test",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "ServerID": 23,
    "Metadata": {"a_key": "a_value"},
    "Description": "The server was unable to deliver your message (ex: unknown user, "
                   "mailbox not found).",
    "Details": "Test bounce details", "Email": "john@example.com",
    "From": "sender@example.com", "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True, "Inactive": True, "CanActivate": True, "Subject": "Test subject",
}  # fmt: skip
POSTMARK_SPAM = {  # Postmark's spam complaint webhook
    "RecordType": "SpamComplaint", "ID": 901542550, "Type": "SpamComplaint", "TypeCode": 512,
    "Name": "Spam complaint", "Tag": "Test", "MessageID": "2706ee8a-737c-4285-b032-ccd317af53ed",
    "ServerID": 1234, "Description": "", "Details": "Test spam complaint details",
    "Email": "spam@example.com", "From": "sender@example.com",
    "BouncedAt": "2016-04-27T16:28:50.3963933-04:00", "DumpAvailable": True,
    "Inactive": True, "CanActivate": False, "Subject": "Postmark event test",
}  # fmt: skip


@pytest.fixture
def postmark_sent(standins):
    api = standins(esp_standins.Postmark, POSTMARK_TOKEN)
    settings = settings_from_environment(
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_POSTMARK_SERVER_TOKEN=POSTMARK_TOKEN,
        ANYMAIL_POSTMARK_API_URL=api.base + "/",
    )
    return api, settings, send_one_email(settings)


def test_postmark_sends_with_only_its_backend_and_token_set(postmark_sent):
    api, settings, message = postmark_sent

    assert settings["EMAIL_MAX_TAGS"] == 1 and settings["checks"] == []
    assert api.errors == []
    [sent] = api.requests
    assert sent["To"] == message.to_email
    assert sent["Tag"] == f"campaign-{message.campaign_id}"
    assert sent["Metadata"]["message_id"] == str(message.pk)
    headers = {h["Name"]: h["Value"] for h in sent["Headers"]}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.esp_message_id  # Postmark's MessageID, as the stand-in answered


def test_the_misfit_the_start_up_check_warns_about_is_one_postmark_would_refuse(standins):
    api = standins(esp_standins.Postmark, POSTMARK_TOKEN)
    settings = settings_from_environment(
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_POSTMARK_SERVER_TOKEN=POSTMARK_TOKEN,
        ANYMAIL_POSTMARK_API_URL=api.base + "/",
        EMAIL_MAX_TAGS="3",
    )
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)

    with override_settings(**settings):
        counts = send_queued_email()

    assert [c.split(":")[0] for c in settings["checks"]] == ["reengage.W012"]
    message.refresh_from_db()
    assert counts == {"failed": 1}
    assert "Postmark does not support multiple tags" in message.error
    assert api.requests == []  # refused by Anymail before anything was sent


@pytest.mark.parametrize(
    ("sample", "reason"), [(POSTMARK_BOUNCE, "bounced"), (POSTMARK_SPAM, "complained")]
)
def test_a_postmark_bounce_or_complaint_for_the_sent_email_suppresses_it(
    client, postmark_sent, sample, reason
):
    _, settings, message = postmark_sent
    event = copy.deepcopy(sample) | {"MessageID": message.esp_message_id, "Email": message.to_email}
    event.pop("Metadata", None)  # found by Postmark's MessageID alone

    with override_settings(ANYMAIL=settings["ANYMAIL"]):
        response = client.post(
            "/anymail/postmark/tracking/", data=json.dumps(event),
            content_type="application/json", **basic_auth(),
        )  # fmt: skip

    assert response.status_code == 200
    assert_suppressed(message, reason)


# --- Mailgun --------------------------------------------------------------------------

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
MAILGUN_SIGNING_KEY = "whsec-mailgun-signing-key-0123456789"
MAILGUN_FAILED_PERMANENT = {  # Mailgun's "failed" (permanent) event, as Anymail's tests have it
    "event": "failed", "severity": "permanent", "reason": "bounce",
    "recipient": "invalid@example.com", "timestamp": 1534110422.389832, "log-level": "error",
    "id": "G9Bn5sl1TC6nu79C8C0bwg",
    "message": {"headers": {"to": "invalid@example.com",
                            "message-id": "20180812214658.1.0DF563D0B3597700@example.org",
                            "from": "Test Sender "}},
    "delivery-status": {"tls": True, "mx-host": "aspmx.l.example.org", "attempt-no": 1,
                        "description": "", "code": 550,
                        "message": "5.1.1 The email account that you tried to reach does "
                                   "not exist."},
    "user-variables": {},
}  # fmt: skip
MAILGUN_COMPLAINED = {  # Mailgun's documented "complained" event
    "id": "-Agny091SquKnsrW2NEKUA", "timestamp": 1521233123.501324, "log-level": "warn",
    "event": "complained", "envelope": {"sending-ip": "173.193.210.33"},
    "flags": {"is-test-mode": False},
    "message": {"headers": {"to": "Alice <alice@example.com>",
                            "message-id": "20110215055645.25246.63817@example.org",
                            "from": "Bob <bob@example.org>",
                            "subject": "Test complained webhook"},
                "attachments": [], "size": 111},
    "recipient": "alice@example.com", "campaigns": [], "tags": ["my_tag_1", "my_tag_2"],
    "user-variables": {},
}  # fmt: skip


def signed_mailgun(event_data: dict) -> dict:
    signature = {"timestamp": "1529006854", "token": "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"}  # fmt: skip
    signature["signature"] = hmac.new(
        MAILGUN_SIGNING_KEY.encode(), (signature["timestamp"] + signature["token"]).encode(),
        hashlib.sha256,
    ).hexdigest()  # fmt: skip
    return {"signature": signature, "event-data": event_data}


@pytest.fixture
def mailgun_sent(standins):
    api = standins(esp_standins.Mailgun, MAILGUN_KEY, "mg.shop.test")
    settings = settings_from_environment(
        EMAIL_BACKEND="anymail.backends.mailgun.EmailBackend",
        ANYMAIL_MAILGUN_API_KEY=MAILGUN_KEY,
        ANYMAIL_MAILGUN_SENDER_DOMAIN="mg.shop.test",
        ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY=MAILGUN_SIGNING_KEY,
        ANYMAIL_MAILGUN_API_URL=api.base + "/v3",
    )
    return api, settings, send_one_email(settings)


def test_mailgun_sends_with_its_key_and_sender_domain(mailgun_sent):
    api, settings, message = mailgun_sent

    assert settings["EMAIL_MAX_TAGS"] == 3 and settings["checks"] == []
    assert api.errors == []
    [form] = api.requests
    assert form["to"] == [message.to_email]
    assert form["o:tag"] == [f"campaign-{message.campaign_id}", f"step-{message.step_id}",
                             f"site-{message.site_id}"]  # fmt: skip
    assert form["v:message_id"] == [str(message.pk)]
    assert form["h:List-Unsubscribe-Post"] == ["List-Unsubscribe=One-Click"]


@pytest.mark.parametrize(
    ("sample", "reason"),
    [(MAILGUN_FAILED_PERMANENT, "bounced"), (MAILGUN_COMPLAINED, "complained")],
)
def test_a_signed_mailgun_bounce_or_complaint_for_the_sent_email_suppresses_it(
    client, mailgun_sent, sample, reason
):
    _, settings, message = mailgun_sent
    event = copy.deepcopy(sample) | {"recipient": message.to_email}
    # What Anymail sent as metadata comes back as Mailgun user-variables.
    event["user-variables"] = {"message_id": str(message.pk)}

    with override_settings(ANYMAIL=settings["ANYMAIL"]):
        response = client.post(
            "/anymail/mailgun/tracking/", data=json.dumps(signed_mailgun(event)),
            content_type="application/json", **basic_auth(),
        )  # fmt: skip

    assert response.status_code == 200
    assert_suppressed(message, reason)


# --- Brevo ----------------------------------------------------------------------------

BREVO_KEY = "xkeysib-0123456789abcdef-brevo"
BREVO_HARD_BOUNCE = {  # Brevo's transactional hard_bounce webhook (Anymail's live sample)
    "event": "hard_bounce", "email": "not-a-user@example.com", "ts_epoch": 1520363423000,
    "message-id": "<201803011158.9876543210@smtp-relay.mailin.fr>",
    "reason": " RecipientError: 550 5.5.0 Requested action not taken: mailbox unavailable.",
    "tag": "header-tag",
}  # fmt: skip
BREVO_COMPLAINT = {  # Brevo's "complaint" webhook
    "event": "complaint", "email": "example@domain.com", "id": "xxxxx",
    "date": "2020-10-09 00:00:00", "ts": 1604933619,
    "message-id": "201798300811.5787683@relay.domain.com", "ts_event": 1604933654,
    "X-Mailin-custom": '{"meta": "data"}', "tags": ["transac_messages"],
}  # fmt: skip


@pytest.fixture
def brevo_sent(standins):
    api = standins(esp_standins.Brevo, BREVO_KEY)
    settings = settings_from_environment(
        EMAIL_BACKEND="anymail.backends.brevo.EmailBackend",
        ANYMAIL_BREVO_API_KEY=BREVO_KEY,
        ANYMAIL_BREVO_API_URL=api.base + "/v3/",
    )
    return api, settings, send_one_email(settings)


def test_brevo_sends_with_its_api_key(brevo_sent):
    api, settings, message = brevo_sent

    assert settings["EMAIL_MAX_TAGS"] == 3 and settings["checks"] == []
    assert api.errors == []
    [sent] = api.requests
    assert sent["to"] == [{"email": message.to_email}]
    assert len(sent["tags"]) == 3
    # Anymail carries metadata in Brevo's X-Mailin-custom header.
    assert json.loads(sent["headers"]["X-Mailin-custom"])["message_id"] == str(message.pk)
    assert sent["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_brevo_sends_for_a_site_whose_name_is_not_ascii(standins):
    # Brevo sends custom headers as raw UTF-8, so Anymail refuses non-ASCII ones;
    # the List-Id label carries the site's name.
    api = standins(esp_standins.Brevo, BREVO_KEY)
    settings = settings_from_environment(
        EMAIL_BACKEND="anymail.backends.brevo.EmailBackend",
        ANYMAIL_BREVO_API_KEY=BREVO_KEY,
        ANYMAIL_BREVO_API_URL=api.base + "/v3/",
    )
    site = make_site(name="Café Müller — 東京", postal_address="1 Rue Haute, Lyon")

    message = send_one_email(settings, site)

    [sent] = api.requests
    assert sent["headers"]["List-Id"] == f'"Cafe Muller" <site-{message.site_id}.127.0.0.1>'


@pytest.mark.parametrize(
    ("sample", "reason"), [(BREVO_HARD_BOUNCE, "bounced"), (BREVO_COMPLAINT, "complained")]
)
def test_a_brevo_bounce_or_complaint_for_the_sent_email_suppresses_it(
    client, brevo_sent, sample, reason
):
    _, settings, message = brevo_sent
    event = copy.deepcopy(sample) | {"email": message.to_email}
    event["message-id"] = message.esp_message_id
    event["X-Mailin-custom"] = json.dumps({"message_id": str(message.pk)})

    with override_settings(ANYMAIL=settings["ANYMAIL"]):
        response = client.post(
            "/anymail/brevo/tracking/", data=json.dumps(event),
            content_type="application/json", **basic_auth(),
        )  # fmt: skip

    assert response.status_code == 200
    assert_suppressed(message, reason)


# --- SendGrid -------------------------------------------------------------------------

SENDGRID_KEY = "SG.fake-api-key.0123456789"
SENDGRID_BOUNCE = {  # SendGrid's Event Webhook "bounce" (Anymail's test of it)
    "ip": "167.89.17.173", "status": "5.1.1",
    "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
    "sg_event_id": "lC0Rc-FuQmKbnxCWxX1jRQ",
    "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
    "sg_message_id": "Lli-03HcQ5-JLybO9fXsJg.filter0077p1las1.21536.5717FC482.0",
    "tls": 1, "event": "bounce", "email": "noreply@example.com", "timestamp": 1461095250,
    "type": "bounce",
}  # fmt: skip
SENDGRID_SPAMREPORT = {  # SendGrid's Event Webhook "spamreport"
    "email": "example@test.com", "timestamp": 1513299569,
    "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "event": "spamreport",
    "sg_event_id": "sg_event_id_spamreport_0001",
    "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
}  # fmt: skip


@pytest.fixture
def sendgrid_sent(standins):
    api = standins(esp_standins.SendGrid, SENDGRID_KEY)
    settings = settings_from_environment(
        EMAIL_BACKEND="anymail.backends.sendgrid.EmailBackend",
        ANYMAIL_SENDGRID_API_KEY=SENDGRID_KEY,
        ANYMAIL_SENDGRID_API_URL=api.base + "/v3/",
    )
    return api, settings, send_one_email(settings)


def test_sendgrid_sends_with_its_api_key_and_is_flagged_as_unsupported(sendgrid_sent):
    api, settings, message = sendgrid_sent

    assert settings["EMAIL_MAX_TAGS"] == 3
    assert [c.split(":")[0] for c in settings["checks"]] == ["reengage.W011"]
    assert api.errors == []
    [sent] = api.requests
    assert sent["personalizations"][0]["to"] == [{"email": message.to_email}]
    assert len(sent["categories"]) == 3
    assert sent["custom_args"]["message_id"] == str(message.pk)
    # Anymail's generated id, which SendGrid's events echo back as anymail_id.
    assert message.esp_message_id == sent["personalizations"][0]["custom_args"]["anymail_id"]


@pytest.mark.parametrize(
    ("sample", "reason"), [(SENDGRID_BOUNCE, "bounced"), (SENDGRID_SPAMREPORT, "complained")]
)
def test_a_sendgrid_bounce_or_spam_report_for_the_sent_email_suppresses_it(
    client, sendgrid_sent, sample, reason
):
    _, settings, message = sendgrid_sent
    # custom_args come back as top-level fields of each event.
    event = copy.deepcopy(sample) | {
        "email": message.to_email, "anymail_id": message.esp_message_id,
        "message_id": str(message.pk),
    }  # fmt: skip

    with override_settings(ANYMAIL=settings["ANYMAIL"]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        response = client.post(
            "/anymail/sendgrid/tracking/", data=json.dumps([event]),
            content_type="application/json", **basic_auth(),
        )  # fmt: skip

    assert response.status_code == 200
    assert_suppressed(message, reason)


# --- Postal: one tag and no metadata ---------------------------------------------------

POSTAL_KEY = "postal-server-api-key-0123"
POSTAL_BOUNCE = {  # Postal's MessageBounced webhook (Anymail's test of it)
    "event": "MessageBounced", "timestamp": 1606753101.961181,
    "payload": {
        "original_message": {"id": 233843, "token": "McC2tuqg7mhx", "direction": "outgoing",
                             "message_id": "7b82aac4-5d63-41b8-8e35-9faa31a892dc@rp.postal.example.com",
                             "to": "bounce@example.com", "from": "sender@example.com",
                             "subject": "...", "timestamp": 1606436187.8883688,
                             "spam_status": "NotChecked", "tag": None},
        "bounce": {"id": 233864, "token": "nII5p0Cp8onV", "direction": "incoming",
                   "message_id": "E1kiRR8-0001ay-Iq@example.com",
                   "to": "bk87jw@psrp.postal.example.com", "from": None,
                   "subject": "Mail delivery failed: returning message to sender",
                   "timestamp": 1606436523.6060522, "spam_status": "NotChecked", "tag": None},
        "details": "details", "output": "server output", "sent_with_ssl": None,
        "timestamp": 1606753101.9110143, "time": None,
    },
    "uuid": "0fcc831f-92b9-4e2b-97f2-d873abc77fab",
}  # fmt: skip


@pytest.fixture(scope="module")
def postal_signing_key():
    """The RSA key a Postal server signs its webhooks with (its public half is the setting)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public_der).decode()


def test_postal_sends_one_tag_and_no_metadata_and_its_bounce_suppresses(
    client, standins, postal_signing_key
):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    private, public = postal_signing_key
    api = standins(esp_standins.Postal, POSTAL_KEY)
    settings = settings_from_environment(
        EMAIL_BACKEND="anymail.backends.postal.EmailBackend",
        ANYMAIL_POSTAL_API_KEY=POSTAL_KEY,
        ANYMAIL_POSTAL_API_URL=api.base,
        ANYMAIL_POSTAL_WEBHOOK_KEY=public,
    )

    message = send_one_email(settings)

    assert (settings["EMAIL_MAX_TAGS"], settings["EMAIL_SEND_METADATA"]) == (1, False)
    assert settings["checks"] == []
    assert api.errors == []
    [sent] = api.requests
    assert sent["tag"] == f"campaign-{message.campaign_id}"
    assert message.esp_message_id == "1531"  # Postal's per-recipient message id

    # Without metadata, the bounce finds the email by Postal's message id.
    event = copy.deepcopy(POSTAL_BOUNCE)
    event["payload"]["original_message"] |= {"id": 1531, "to": message.to_email}
    body = json.dumps(event).encode()
    # Postal signs with RSA and SHA-1 (its scheme, not our choice).
    signed = private.sign(body, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    signature = base64.b64encode(signed).decode()
    with override_settings(ANYMAIL=settings["ANYMAIL"]):
        response = client.post(
            "/anymail/postal/tracking/", data=body, content_type="application/json",
            HTTP_X_POSTAL_SIGNATURE=signature, **basic_auth(),
        )  # fmt: skip

    assert response.status_code == 200
    assert_suppressed(message, "bounced")


# --- Amazon SES -----------------------------------------------------------------------

AWS_KEY, AWS_SECRET, AWS_REGION = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "eu-west-1"  # fmt: skip
SES_BOUNCE = {  # SES's documented bounce notification (notification-examples-bounce)
    "notificationType": "Bounce",
    "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
               "reportingMTA": "dns; email.example.com",
               "bouncedRecipients": [{"emailAddress": "jane@example.com", "status": "5.1.1",
                                      "action": "failed",
                                      "diagnosticCode": "smtp; 550 5.1.1 User unknown"}],
               "timestamp": "2016-01-27T14:59:44.101Z",
               "feedbackId": "00000138111222aa-44455566-cccc-cccc-cccc-ddddaaaa068a-000000"},
    "mail": {"timestamp": "2016-01-27T14:59:38.237Z", "source": "john@example.com",
             "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
             "destination": ["jane@example.com"], "headersTruncated": False, "headers": []},
}  # fmt: skip
SES_COMPLAINT = {  # SES's documented complaint notification
    "notificationType": "Complaint",
    "complaint": {"userAgent": "AnyCompany Feedback Loop (V0.01)",
                  "complainedRecipients": [{"emailAddress": "richard@example.com"}],
                  "complaintFeedbackType": "abuse", "timestamp": "2016-01-27T14:59:38.237Z",
                  "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"},
    "mail": {"messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
             "destination": ["richard@example.com"], "headers": []},
}  # fmt: skip


def sns_notification(ses_event: dict, sns_id: str) -> dict:
    """How SNS delivers an SES notification over HTTPS: the event JSON in Message."""
    return {
        "Type": "Notification", "MessageId": sns_id,
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events",
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(ses_event) + "\n", "Timestamp": "2026-03-02T10:05:00.675Z",
        "SignatureVersion": "1", "Signature": "EXAMPLE-SIGNATURE==",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }  # fmt: skip


@pytest.fixture
def ses_sent(standins):
    api = standins(esp_standins.AmazonSES, AWS_KEY, AWS_SECRET, AWS_REGION)
    client_params = {"endpoint_url": api.base, "region_name": AWS_REGION,
                     "aws_access_key_id": AWS_KEY, "aws_secret_access_key": AWS_SECRET}  # fmt: skip
    settings = settings_from_environment(
        EMAIL_BACKEND="anymail.backends.amazon_ses.EmailBackend",
        ANYMAIL_AMAZON_SES_CLIENT_PARAMS=json.dumps(client_params),
    )
    return api, settings, send_one_email(settings)


def test_amazon_ses_sends_through_boto3_with_its_client_params_as_json(ses_sent):
    api, settings, message = ses_sent

    assert settings["ANYMAIL"]["AMAZON_SES_CLIENT_PARAMS"]["region_name"] == AWS_REGION
    assert settings["EMAIL_MAX_TAGS"] == 3 and settings["checks"] == []
    assert api.errors == []
    [sent] = api.requests
    assert sent["params"]["Destination"]["ToAddresses"] == [message.to_email]
    mime = sent["mime"]
    assert json.loads(mime["X-Metadata"])["message_id"] == str(message.pk)
    assert len(mime.get_all("X-Tag")) == 3
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.esp_message_id.startswith("0100018e")


@pytest.mark.parametrize(
    ("sample", "reason"), [(SES_BOUNCE, "bounced"), (SES_COMPLAINT, "complained")]
)
def test_an_ses_bounce_or_complaint_through_sns_suppresses_the_sent_email(
    client, ses_sent, sample, reason
):
    _, settings, message = ses_sent
    ses_event = copy.deepcopy(sample)
    ses_event["mail"]["messageId"] = message.esp_message_id
    ses_event["mail"]["destination"] = [message.to_email]
    recipients = ses_event.get("bounce", ses_event.get("complaint"))
    key = "bouncedRecipients" if "bounce" in ses_event else "complainedRecipients"
    recipients[key][0]["emailAddress"] = message.to_email
    # Anymail reads metadata back from the X-Metadata header SES echoes.
    ses_event["mail"]["headers"] = [{"name": "X-Metadata",
                                     "value": json.dumps({"message_id": str(message.pk)})}]  # fmt: skip
    notification = sns_notification(ses_event, f"sns-{reason}-0001")

    with override_settings(ANYMAIL=settings["ANYMAIL"]):
        # SNS posts JSON as text/plain, with its type and id repeated in headers.
        response = client.post(
            "/anymail/amazon_ses/tracking/", data=json.dumps(notification),
            content_type="text/plain; charset=UTF-8",
            HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification",
            HTTP_X_AMZ_SNS_MESSAGE_ID=notification["MessageId"], **basic_auth(),
        )  # fmt: skip

    assert response.status_code == 200
    assert_suppressed(message, reason)


def test_an_ses_notification_without_the_secret_is_asked_for_it_and_writes_nothing(
    client, ses_sent
):
    _, settings, _ = ses_sent
    notification = sns_notification(copy.deepcopy(SES_BOUNCE), "sns-unauthenticated")

    with override_settings(ANYMAIL=settings["ANYMAIL"]):
        response = client.post(
            "/anymail/amazon_ses/tracking/", data=json.dumps(notification),
            content_type="text/plain; charset=UTF-8",
            HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification",
            HTTP_X_AMZ_SNS_MESSAGE_ID=notification["MessageId"],
        )  # fmt: skip

    # SNS sends basic auth only after a 401 asking for it.
    assert response.status_code == 401
    assert not Suppression.objects.exists()


def test_an_sns_subscription_confirmation_with_the_secret_is_confirmed_through_boto3(
    client, ses_sent
):
    api, settings, _ = ses_sent
    # SNS's documented SubscriptionConfirmation message.
    confirmation = {
        "Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a7",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events",
        "Message": "You have chosen to subscribe to the topic "
                   "arn:aws:sns:eu-west-1:123456789012:ses-events.\n"
                   "To confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&...",
        "Timestamp": "2026-03-02T10:00:00.000Z", "SignatureVersion": "1",
        "Signature": "EXAMPLE-SIGNATURE==",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",
    }  # fmt: skip

    with override_settings(ANYMAIL=settings["ANYMAIL"]):
        response = client.post(
            "/anymail/amazon_ses/tracking/", data=json.dumps(confirmation),
            content_type="text/plain; charset=UTF-8",
            HTTP_X_AMZ_SNS_MESSAGE_TYPE="SubscriptionConfirmation",
            HTTP_X_AMZ_SNS_MESSAGE_ID=confirmation["MessageId"], **basic_auth(),
        )  # fmt: skip

    assert response.status_code == 200
    assert api.errors == []
    [confirmed] = api.confirmed
    assert confirmed["TopicArn"] == [confirmation["TopicArn"]]
    assert confirmed["Token"] == [confirmation["Token"]]


# --- plain SMTP -----------------------------------------------------------------------


# Over loopback, without TLS; aiosmtpd warns that AUTH should need TLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_plain_smtp_sends_with_login_from_the_email_host_variables():
    server = esp_standins.SMTPServer("mailer", "smtp-password")
    try:
        settings = settings_from_environment(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(server.port), EMAIL_HOST_USER="mailer",
            EMAIL_HOST_PASSWORD="smtp-password", EMAIL_USE_TLS="0",
            DEFAULT_FROM_EMAIL="Shop <hello@shop.test>",
        )  # fmt: skip
        message = send_one_email(settings)
    finally:
        server.close()

    assert settings["EMAIL_PORT"] == server.port and settings["checks"] == []
    [(mail_from, rcpt_tos, mime)] = server.messages
    assert (mail_from, rcpt_tos) == ("hello@shop.test", [message.to_email])
    assert mime["Message-ID"].startswith(f"<reengage.{message.pk}@")
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime.get_body(("html",)) is not None
