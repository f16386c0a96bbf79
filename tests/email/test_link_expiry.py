"""Click, open and view-in-browser tokens expire after EMAIL_TRACKING_LINK_MAX_AGE_DAYS;
the unsubscribe pages do not show the address to whoever holds the link."""

from __future__ import annotations

import base64
import time

import pytest
from django.conf import settings as django_settings
from django.core import signing

from campaigns.email.rendering import (
    CLICK_SALT,
    OPEN_SALT,
    UNSUBSCRIBE_SALT,
    VIEW_SALT,
    click_token,
    message_token,
)
from campaigns.models import Message
from tests.email.conftest import sent_message

pytestmark = pytest.mark.django_db
URL = "https://shop.test/p/shirt"


def signed_days_ago(days: int, salt: str) -> signing.TimestampSigner:
    """A real signer whose clock is `days` behind: the token is what such an email held."""

    class Earlier(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time()) - days * 86400)

    return Earlier(key=django_settings.SECRET_KEY, salt=salt)


def old_click_token(message_id: int, days: int) -> str:
    payload = base64.urlsafe_b64encode(f"{message_id} {URL}".encode()).rstrip(b"=").decode()
    return signed_days_ago(days, CLICK_SALT + ".t").sign(payload)


@pytest.fixture
def message(settings):
    settings.EMAIL_TRACKING_LINK_MAX_AGE_DAYS = 30
    return sent_message()


def test_a_fresh_click_redirects_and_counts(client, message):
    response = client.get(f"/email/c/{click_token(message.pk, URL)}/")
    assert response.status_code == 302 and response["Location"] == URL
    assert Message.objects.get(pk=message.pk).clicked_at is not None


def test_a_click_token_older_than_the_limit_has_expired(client, message):
    assert client.get(f"/email/c/{old_click_token(message.pk, 29)}/").status_code == 302
    response = client.get(f"/email/c/{old_click_token(message.pk, 31)}/")
    assert response.status_code == 400
    assert "This link has expired." in response.content.decode()


def test_an_undated_click_token_works_only_while_undated_tokens_are_accepted(
    client, message, settings
):
    payload = base64.urlsafe_b64encode(f"{message.pk} {URL}".encode()).rstrip(b"=").decode()
    undated = signing.Signer(key=settings.SECRET_KEY, salt=CLICK_SALT).sign(payload)
    assert client.get(f"/email/c/{undated}/").status_code == 302
    settings.EMAIL_ACCEPT_UNDATED_CLICK_TOKENS = False
    assert client.get(f"/email/c/{undated}/").status_code == 400


def test_an_old_open_pixel_is_served_but_not_counted(client, message):
    old = signed_days_ago(31, OPEN_SALT).sign_object(message.pk)
    response = client.get(f"/email/o/{old}/")
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    assert Message.objects.get(pk=message.pk).opened_at is None
    client.get(f"/email/o/{message_token(message.pk, OPEN_SALT)}/")
    assert Message.objects.get(pk=message.pk).opened_at is not None


def test_an_old_view_in_browser_link_has_expired(client, message):
    old = signed_days_ago(31, VIEW_SALT).sign_object(message.pk)
    response = client.get(f"/email/view/{old}/")
    assert response.status_code == 400
    assert "This link has expired." in response.content.decode()
    assert client.get(f"/email/view/{message_token(message.pk, VIEW_SALT)}/").status_code == 200


@pytest.mark.parametrize("page", ["unsubscribe", "preferences"])
def test_the_unsubscribe_pages_do_not_show_the_address(client, message, page):
    token = message_token(message.pk, UNSUBSCRIBE_SALT)
    for response in (
        client.get(f"/email/{page}/{token}/"),
        client.post(f"/email/{page}/{token}/", {"choice": "all"}),
    ):
        text = response.content.decode()
        assert response.status_code == 200
        assert message.to_email not in text and message.to_email.split("@")[0] not in text


@pytest.mark.parametrize("salt", [UNSUBSCRIBE_SALT, VIEW_SALT, OPEN_SALT])
def test_a_message_token_is_the_token_djangos_signing_makes(monkeypatch, salt):
    monkeypatch.setattr(signing.time, "time", lambda: 1_800_000_000)
    for message_id in (1, 42, 2**40):
        token = message_token(message_id, salt)
        assert token == signing.dumps(message_id, salt=salt)
        assert signing.loads(token, salt=salt) == message_id


def test_a_click_token_is_the_token_djangos_signer_makes(monkeypatch):
    monkeypatch.setattr(signing.time, "time", lambda: 1_800_000_000)
    payload = base64.urlsafe_b64encode(f"7 {URL}".encode()).rstrip(b"=").decode()
    django_signer = signing.TimestampSigner(key=django_settings.SECRET_KEY, salt=CLICK_SALT + ".t")
    assert click_token(7, URL) == django_signer.sign(payload)


def test_tokens_made_before_the_secret_key_rotated_still_work(client, message, settings):
    old_key = settings.SECRET_KEY
    unsubscribe = message_token(message.pk, UNSUBSCRIBE_SALT)
    click = click_token(message.pk, URL)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a new key " * 5, [old_key]
    assert message_token(message.pk, UNSUBSCRIBE_SALT) != unsubscribe  # signed anew
    assert client.get(f"/email/c/{click}/").status_code == 302
    assert client.get(f"/email/unsubscribe/{unsubscribe}/").status_code == 200
    settings.SECRET_KEY_FALLBACKS = []
    assert client.get(f"/email/c/{click}/").status_code == 400
