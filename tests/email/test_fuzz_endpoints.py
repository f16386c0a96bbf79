"""Property-based fuzzing of the public email endpoints (hypothesis): the unsubscribe page
and RFC 8058 one-click POST, preferences, the click redirect, the open pixel, the
browser view, and Anymail's ESP tracking webhooks.

The property: never a 5xx; each answer is the documented success or a specific
4xx (400 for a bad token or payload, 405 for a method the endpoint does not
take, 413 for a body over the limit); a request without valid credentials
writes nothing. Inputs are random tokens, valid tokens for real messages,
random form and multipart bodies, random URLs inside validly signed click
tokens, and the ESPs' documented payloads with fields replaced or removed,
with and without the right basic auth (and, for Mailgun, signature).

Memory: tests/email/test_endpoint_limits.py.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from urllib.parse import quote, urlsplit

import pytest
from django.core import signing
from django.test import override_settings
from django.utils.encoding import iri_to_uri
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from campaigns.email.esp_webhooks import tracking_urlpatterns
from campaigns.email.rendering import (
    OPEN_SALT,
    UNSUBSCRIBE_SALT,
    VIEW_SALT,
    click_token,
    message_token,
    safe_url,
)
from campaigns.models import EmailEvent, Message, Suppression
from tests.email.conftest import sent_message
from tests.tracking.test_fuzz_public_endpoints import (
    FUZZ_EXAMPLES,
    fuzz,
    header_text,
    json_values,
    path_ids,
    text,
)

pytestmark = pytest.mark.django_db

SECRET = "hooks:correct-horse-battery"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
ANYMAIL = {"WEBHOOK_SECRET": [SECRET], "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}


@pytest.fixture
def message():
    return sent_message()


# --- strategies ------------------------------------------------------------------

methods = st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"])
content_types = st.sampled_from(
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
     "multipart/form-data", "multipart/form-data; boundary=", "application/json",
     "text/plain", ""]
) | header_text  # fmt: skip
form_values = st.dictionaries(
    st.sampled_from(["List-Unsubscribe", "choice", "csrfmiddlewaretoken", "x"]) | text,
    st.sampled_from(["One-Click", "campaign", "all", "resubscribe"]) | text,
    max_size=4,
)


@st.composite
def form_bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["urlencoded", "multipart", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    fields = {
        k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass")
        for k, v in draw(form_values).items()
    }
    if kind == "urlencoded":
        return b"&".join(quote(k).encode() + b"=" + quote(v).encode() for k, v in fields.items())
    parts = [
        b'--xyz\r\nContent-Disposition: form-data; name="' + k + b'"\r\n\r\n' + v + b"\r\n"
        for k, v in fields.items()
    ]
    tail = draw(st.sampled_from([b"--xyz--\r\n", b"", b"--xyz", b"--x"]))
    return b"".join(parts) + tail


def token_for(kind: str, message: Message, salt: str, raw: str) -> str:
    """A valid token for the message, one for a message that does not exist, a token
    signed for another purpose, a tampered one, or anything at all."""
    if kind == "valid":
        return message_token(message.pk, salt)
    if kind == "missing":
        return message_token(message.pk + 10_000, salt)
    if kind == "other-salt":
        return message_token(message.pk, "reengage.email.other")
    if kind == "not-an-id":
        return signing.dumps(raw, salt=salt)
    if kind == "tampered":
        token = message_token(message.pk, salt)
        return token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    return raw


token_kinds = st.sampled_from(["valid", "missing", "other-salt", "not-an-id", "tampered", "raw"])


def request(client, method: str, path: str, body: bytes = b"", content_type: str = ""):
    return client.generic(method, path, body, content_type=content_type)


# --- unsubscribe and preferences -------------------------------------------------------


@fuzz
@given(
    kind=token_kinds,
    raw=path_ids,
    method=methods,
    body=form_bodies(),
    content_type=content_types,
)
def test_unsubscribe_answers_its_page_or_a_4xx(client, message, kind, raw, method, body,
                                              content_type):  # fmt: skip
    token = token_for(kind, message, UNSUBSCRIBE_SALT, raw)
    Suppression.objects.all().delete()  # examples share the database
    response = request(client, method, f"/email/unsubscribe/{quote(token, safe='')}/",
                       body, content_type)  # fmt: skip
    if method not in ("GET", "POST"):
        assert response.status_code == 405
    elif kind == "valid":
        assert response.status_code == 200, response.content[:300]
    else:
        assert response.status_code == 400, (token, response.status_code)
    # Only a POST with a valid token unsubscribes; a GET (a link scanner) never does.
    assert Suppression.objects.exists() == (kind == "valid" and method == "POST")


@fuzz
@given(body=form_bodies(), content_type=content_types)
def test_the_one_click_post_unsubscribes_whatever_else_the_body_holds(
    client, message, body, content_type
):
    token = message_token(message.pk, UNSUBSCRIBE_SALT)
    Suppression.objects.all().delete()  # examples share the database
    response = client.post(f"/email/unsubscribe/{token}/", body, content_type=content_type)
    assert response.status_code == 200
    # A POST to the link is the unsubscribe (RFC 8058: the body says one-click or not).
    assert Suppression.objects.filter(site=message.site, reason="unsubscribed").count() == 1


@fuzz
@given(kind=token_kinds, raw=path_ids, method=methods, body=form_bodies(),
       content_type=content_types)  # fmt: skip
def test_preferences_answer_their_page_or_a_4xx(client, message, kind, raw, method, body,
                                               content_type):  # fmt: skip
    token = token_for(kind, message, UNSUBSCRIBE_SALT, raw)
    response = request(client, method, f"/email/preferences/{quote(token, safe='')}/",
                       body, content_type)  # fmt: skip
    if method not in ("GET", "POST"):
        assert response.status_code == 405
    elif kind != "valid":
        assert response.status_code == 400
    elif method == "GET":
        assert response.status_code == 200
    else:  # a POST's choice must be one of three
        assert response.status_code in (200, 400), response.status_code


# --- click, open, browser view -----------------------------------------------------------

urls = st.sampled_from(
    ["https://shop.test/cart", "http://shop.test/p?q=1#x", "javascript:alert(1)",
     "data:text/html,<script>", "//evil.test", "https://", "http://[", "https://shop.test/\r\nX: 1",
     "https://shop.test/\x00", "https://shop.test/é", "HTTPS://SHOP.TEST/"]
) | text | st.builds(lambda t: "https://shop.test/" + t, text)  # fmt: skip


@fuzz
@given(url=urls, method=methods)
def test_a_signed_click_redirects_only_to_a_web_address(client, message, url, method):
    assume(not any("\ud800" <= c <= "\udfff" for c in url))  # no link can hold one
    response = request(client, method, f"/email/c/{click_token(message.pk, url)}/")
    if method not in ("GET", "HEAD"):
        assert response.status_code == 405
        return
    target = safe_url(url)
    if target:
        assert response.status_code == 302, (url, response.status_code)
        location = response["Location"]
        assert urlsplit(location).scheme.lower() in ("http", "https")
        assert location == iri_to_uri(target)  # control characters percent-encoded
    else:
        assert response.status_code == 400, (url, response.status_code)


@fuzz
@given(raw=path_ids, method=methods)
def test_a_random_click_token_is_a_400(client, message, raw, method):
    response = request(client, method, f"/email/c/{quote(raw, safe='')}/")
    assert response.status_code == (405 if method not in ("GET", "HEAD") else 400)
    message.refresh_from_db()
    assert message.clicked_at is None


@fuzz
@given(kind=token_kinds, raw=path_ids, method=methods)
def test_the_open_pixel_always_answers_its_gif(client, message, kind, raw, method):
    token = token_for(kind, message, OPEN_SALT, raw)
    response = request(client, method, f"/email/o/{quote(token, safe='')}/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"


@fuzz
@given(kind=token_kinds, raw=path_ids, method=methods)
def test_the_browser_view_answers_the_email_or_a_4xx(client, message, kind, raw, method):
    token = token_for(kind, message, VIEW_SALT, raw)
    response = request(client, method, f"/email/view/{quote(token, safe='')}/")
    if method != "GET":
        assert response.status_code == 405
    else:
        assert response.status_code == (200 if kind == "valid" else 400)


# --- Anymail's ESP webhooks ------------------------------------------------------------

# The ESPs' documented payloads (ids pointing at the fixture's message).
POSTMARK = {
    "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807,
    "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "Test",
    "MessageID": "esp-1", "Metadata": {"message_id": "1"}, "ServerID": 23,
    "Description": "The server was unable to deliver your message", "Details": "Test bounce",
    "Email": "john@example.com", "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z", "DumpAvailable": True, "Inactive": True,
    "CanActivate": True, "Subject": "Test subject",
}  # fmt: skip
POSTMARK_CLICK = {
    "RecordType": "Click", "MessageID": "esp-1", "Recipient": "john@example.com",
    "OriginalLink": "https://example.com/click/me", "ReceivedAt": "2026-03-02T11:00:00Z",
    "ClickLocation": "HTML", "Platform": "Desktop", "Metadata": {}, "Tag": "",
    "Client": {"Name": "Chrome"}, "OS": {"Name": "Linux"}, "Geo": {"Country": "DE"},
}  # fmt: skip
MAILGUN = {
    "signature": {"timestamp": "1529006854",
                  "token": "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0", "signature": ""},
    "event-data": {
        "id": "-Agny091SquKnsrW2NEKUA", "timestamp": 1521233123.501324, "log-level": "warn",
        "event": "complained", "envelope": {"sending-ip": "173.193.210.33"},
        "flags": {"is-test-mode": False},
        "message": {"headers": {"to": "Alice <alice@example.com>", "message-id": "esp-1",
                                "from": "Bob <bob@example.org>", "subject": "Test"},
                    "attachments": [], "size": 111},
        "recipient": "alice@example.com", "campaigns": [], "tags": ["my_tag_1"],
        "user-variables": {"message_id": "1"},
        "delivery-status": {"code": 550, "message": "", "description": "", "attempt-no": 1},
        "reason": "bounce", "severity": "permanent",
    },
}  # fmt: skip
SENDGRID = [
    {"email": "example@test.com", "timestamp": 1513299569, "smtp-id": "<14c5d75ce93.dfd@ismtpd>",
     "event": "bounce", "category": "cat facts", "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
     "sg_message_id": "esp-1.filter0001.16648.5515E0B88.0", "reason": "500 unknown recipient",
     "status": "5.0.0", "type": "bounce", "message_id": "1"},
    {"email": "example@test.com", "timestamp": 1513299569, "event": "click",
     "sg_event_id": "sg_event_id", "sg_message_id": "sg_message_id",
     "useragent": "Mozilla/4.0", "ip": "255.255.255.255", "url": "http://www.sendgrid.com/"},
]  # fmt: skip
REAL = {"postmark": [POSTMARK, POSTMARK_CLICK], "mailgun": [MAILGUN], "sendgrid": [SENDGRID]}


def mutate(payload, draw):
    """Replace or remove a few fields anywhere in the payload (dicts and lists)."""
    payload = copy.deepcopy(payload)
    for _ in range(draw(st.integers(0, 3))):
        container = payload
        while True:
            if isinstance(container, dict) and container:
                key = draw(st.sampled_from(sorted(container)))
            elif isinstance(container, list) and container:
                key = draw(st.integers(0, len(container) - 1))
            else:
                break
            child = container[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                container = child  # go deeper
                continue
            if isinstance(container, dict) and draw(st.booleans()):
                del container[key]
            else:
                container[key] = draw(json_values)
            break
    return payload


@st.composite
def webhook_bodies(draw, esp: str) -> tuple[bytes, str]:
    kind = draw(st.sampled_from(["mutated", "mutated", "json", "bytes", "form"]))
    if kind == "bytes":
        return draw(st.binary(max_size=400)), draw(content_types)
    if kind == "form":
        return draw(form_bodies()), "application/x-www-form-urlencoded"
    if kind == "json":
        return json.dumps(draw(json_values)).encode(), "application/json"
    payload = mutate(draw(st.sampled_from(REAL[esp])), draw)
    if esp == "mailgun" and draw(st.booleans()):
        payload = sign_mailgun(payload)
    return json.dumps(payload).encode(), "application/json"


def sign_mailgun(payload):
    block = payload.get("signature") if isinstance(payload, dict) else None
    if (
        isinstance(block, dict)
        and isinstance(block.get("timestamp"), str)
        and isinstance(block.get("token"), str)
    ):
        message = (block["timestamp"] + block["token"]).encode("utf-8", "surrogatepass")
        block["signature"] = hmac.new(MAILGUN_KEY.encode(), message, hashlib.sha256).hexdigest()
    return payload


def basic_auth(credentials: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


ESPS = ["postmark", "mailgun", "sendgrid"]


@override_settings(ANYMAIL=ANYMAIL)
@pytest.mark.parametrize("esp", ESPS)
def test_each_real_payload_is_accepted(client, message, esp):
    for payload in REAL[esp]:
        body = sign_mailgun(copy.deepcopy(payload)) if esp == "mailgun" else payload
        response = client.post(f"/anymail/{esp}/tracking/", json.dumps(body),
                               content_type="application/json", **basic_auth(SECRET))  # fmt: skip
        assert response.status_code == 200, (esp, response.content[:300])
    assert EmailEvent.objects.exists()


@override_settings(ANYMAIL=ANYMAIL)
@pytest.mark.parametrize("esp", ESPS)
@fuzz
@given(data=st.data(), auth=st.sampled_from(["valid", "wrong", "none"]) | header_text)
def test_esp_webhooks_never_fail_and_refuse_without_credentials(client, message, esp, data,
                                                                auth):  # fmt: skip
    body, content_type = data.draw(webhook_bodies(esp))
    headers = {}
    if auth == "valid":
        headers = basic_auth(SECRET)
    elif auth == "wrong":
        headers = basic_auth("hooks:wrong")
    elif auth != "none":
        headers = {"HTTP_AUTHORIZATION": auth}
    events_before = EmailEvent.objects.count()
    response = client.post(f"/anymail/{esp}/tracking/", body, content_type=content_type,
                           **headers)  # fmt: skip
    assert response.status_code in (200, 400), (esp, response.status_code, body[:300])
    if auth != "valid":
        assert response.status_code == 400
        assert EmailEvent.objects.count() == events_before


MOUNTED = [p.name.removesuffix("_tracking_webhook") for p in tracking_urlpatterns()]


@override_settings(ANYMAIL=ANYMAIL)
@pytest.mark.parametrize("esp", MOUNTED)
@settings(max_examples=max(FUZZ_EXAMPLES // 10, 10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(body=st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300)))
def test_every_mounted_esp_webhook_refuses_garbage_with_a_400(client, esp, body):
    response = client.post(f"/anymail/{esp}/tracking/", body, content_type="application/json",
                           **basic_auth(SECRET))  # fmt: skip
    if response.status_code == 404:  # an ESP that needs its own signing key, not set here
        assert "_" in response.json()["error"] and response.json()["field"] == "url"
    elif response.status_code == 501:  # an ESP whose package is not installed
        assert "pip install" in response.json()["error"]
    else:
        assert response.status_code in (200, 400), (esp, response.status_code, body[:200])


def test_an_esp_webhook_missing_its_setting_is_a_404_naming_it(client):
    response = client.post("/anymail/mailersend/tracking/", "{}", content_type="application/json",
                           **basic_auth(SECRET))  # fmt: skip
    assert response.status_code == 404
    assert "MAILERSEND_SIGNING_SECRET" in response.json()["error"]


def test_inbound_webhooks_are_not_mounted_and_every_esps_tracking_webhook_is(client):
    assert client.post("/anymail/postmark/inbound/", "{}", content_type="application/json",
                       **basic_auth(SECRET)).status_code == 404  # fmt: skip
    # Amazon SES's too, without boto3 as a 501 naming the extra (test_esp_settings.py).
    assert {"postmark", "mailgun", "brevo", "sendgrid", "amazon_ses"} <= set(MOUNTED)
