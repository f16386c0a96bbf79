"""Unsubscribe (RFC 8058 one-click), preferences, click redirects and the open pixel."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing

from campaigns.email.rendering import (
    OPEN_SALT,
    UNSUBSCRIBE_SALT,
    click_token,
    links_for,
    message_token,
)
from campaigns.models import CampaignOptOut, Message, Suppression
from tests.email.conftest import T0, make_campaign, queue_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def message():
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)
    Message.objects.filter(pk=message.pk).update(status="sent", sent_at=T0)
    message.refresh_from_db()
    return message


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_the_one_click_post_unsubscribes_without_a_csrf_token(message):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    url = path_of(links_for(message.pk).unsubscribe_url)

    response = client.post(url, data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")  # fmt: skip

    assert response.status_code == 200
    suppression = Suppression.objects.get()
    assert (suppression.site_id, suppression.reason) == (message.site_id, "unsubscribed")
    assert "one-click" in suppression.note
    message.refresh_from_db()
    assert message.status == "unsubscribed"


def test_get_only_asks_for_confirmation(client, message):
    response = client.get(path_of(links_for(message.pk).unsubscribe_url))

    assert response.status_code == 200
    assert b"Unsubscribe?" in response.content
    assert b'method="post"' in response.content
    assert not Suppression.objects.exists()


@pytest.mark.parametrize("tamper", ["flip_a_character", "other_salt", "forged_id"])
def test_a_tampered_token_is_refused(client, message, tamper):
    token = message_token(message.pk, UNSUBSCRIBE_SALT)
    if tamper == "flip_a_character":
        token = token[:-1] + ("A" if token[-1] != "A" else "B")
    elif tamper == "other_salt":
        token = message_token(message.pk, OPEN_SALT)
    else:
        _, _, signature = token.partition(":")
        token = signing.dumps(message.pk + 1, salt=UNSUBSCRIBE_SALT).split(":")[0] + ":" + signature

    response = client.post(f"/email/unsubscribe/{token}/", data={"List-Unsubscribe": "One-Click"})

    assert response.status_code == 400
    assert not Suppression.objects.exists()


def test_preferences_leave_one_campaign_then_resubscribe(client, message):
    url = path_of(links_for(message.pk).preferences_url)

    assert client.post(url, {"choice": "campaign"}).status_code == 200
    assert CampaignOptOut.objects.filter(campaign=message.campaign).count() == 1
    assert not Suppression.objects.exists()

    client.post(url, {"choice": "all"})
    assert Suppression.objects.filter(reason="unsubscribed").count() == 1

    page = client.post(url, {"choice": "resubscribe"})
    assert b"subscribed again" in page.content
    assert not Suppression.objects.exists()
    assert not CampaignOptOut.objects.exists()


def test_resubscribing_does_not_lift_a_bounce(client, message):
    from campaigns.models.email import email_hash

    Suppression.objects.create(
        site=message.site, email_hash=email_hash(message.to_email), reason="bounced"
    )
    client.post(path_of(links_for(message.pk).preferences_url), {"choice": "resubscribe"})
    assert Suppression.objects.filter(reason="bounced").exists()


def test_a_click_redirects_to_the_signed_target_and_records_the_click(client, message):
    target = "https://shop.test/cart?utm_source=reengage"

    response = client.get(f"/email/c/{click_token(message.pk, target)}/")

    assert response.status_code == 302
    assert response["Location"] == target
    message.refresh_from_db()
    assert message.status == "clicked" and message.clicked_at is not None


@pytest.mark.parametrize(
    "attempt",
    ["swap_the_target", "javascript_url", "protocol_relative", "query_parameter"],
)
def test_open_redirect_attempts_are_refused(client, message, attempt):
    token = click_token(message.pk, "https://shop.test/cart")
    if attempt == "swap_the_target":
        evil = click_token(message.pk, "https://evil.test/")
        token = evil.split(":")[0] + ":" + token.split(":")[1]
        url = f"/email/c/{token}/"
    elif attempt == "javascript_url":
        url = f"/email/c/{click_token(message.pk, 'javascript:alert(1)')}/"
    elif attempt == "protocol_relative":
        url = f"/email/c/{click_token(message.pk, '//evil.test/')}/"
    else:
        url = f"/email/c/{token}/?next=https://evil.test/&url=https://evil.test/"

    response = client.get(url)

    if attempt == "query_parameter":
        assert response["Location"] == "https://shop.test/cart"
    else:
        assert response.status_code == 400
        assert "Location" not in response


def test_sent_links_point_through_the_redirect_with_utm_parameters():
    from django.core import mail
    from django.core.mail import get_connection

    from campaigns.email import sending
    from campaigns.email.rendering import read_click_token

    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)
    backend = get_connection("anymail.backends.test.EmailBackend")
    sending.send_one(message.pk, clock=lambda: T0, backend=backend)
    body = mail.outbox[-1].alternatives[0][0]
    tokens = re.findall(r'href="http://127\.0\.0\.1:8000/email/c/([^/"]+)/"', body)
    targets = {read_click_token(t)[1] for t in tokens}
    cart = next(t for t in targets if t.startswith("https://shop.test/cart"))
    query = parse_qs(urlsplit(cart).query)
    assert query["utm_source"] == ["reengage"] and query["utm_medium"] == ["email"]
    assert query["utm_campaign"] == [f"c{campaign.pk}"]
    # Our own links (unsubscribe, preferences) are not wrapped.
    assert "/email/unsubscribe/" in body


def test_the_open_pixel_records_an_open_and_answers_a_gif(client, message):
    response = client.get(f"/email/o/{message_token(message.pk, OPEN_SALT)}/")

    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    message.refresh_from_db()
    assert message.status == "opened"


def test_the_browser_view_renders_the_email_under_a_strict_csp(client, message):
    from campaigns.email.rendering import VIEW_SALT

    response = client.get(f"/email/view/{message_token(message.pk, VIEW_SALT)}/")

    assert response.status_code == 200
    assert b"Linen shirt" in response.content
    assert "default-src 'none'" in response["Content-Security-Policy"]
