"""Destinations' credentials and the ESP webhook secret rotate with an overlap.

A rotation at time R keeps the previous pull-API token reading, and webhooks
signed under the previous secret too, until R + 24 h; after that only the new
one works. The clock is controlled by rotating "in the past" (R = now − 23 h or
now − 25 h) and calling the real API and the real delivery now: receivers
(and the standardwebhooks package) refuse timestamps far from the real time.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks
from django.contrib.auth.models import User
from django.db import connection
from django.test import override_settings

from campaigns.audiences import delivery
from campaigns.models import Audience, Destination
from tests.audiences.test_webhooks import Receiver, add_people
from tests.factories import make_site
from tests.test_settings import run_manage

pytestmark = pytest.mark.django_db

INSIDE, AFTER = timedelta(hours=23), timedelta(hours=25)


@pytest.fixture
def receiver(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True  # the receiver listens on 127.0.0.1
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def audience():
    return Audience.objects.create(site=make_site(), name="Retarget", include_hashed_emails=True)


def members(client, audience, token: str) -> int:
    response = client.get(
        f"/api/v1/audiences/{audience.id}/members", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    return response.status_code


# --- pull-API tokens -------------------------------------------------------------


@pytest.mark.parametrize(("rotated_ago", "old_status"), [(INSIDE, 200), (AFTER, 401)])
def test_a_rotated_token_keeps_reading_for_the_overlap_then_stops(
    client, audience, rotated_ago, old_status
):
    destination = Destination.objects.create(audience=audience, name="sync")
    now = datetime.now(UTC)
    old = destination.issue_token(now=now - rotated_ago - timedelta(hours=1))
    new = destination.issue_token(now=now - rotated_ago)

    assert members(client, audience, new) == 200
    assert members(client, audience, old) == old_status


def test_a_token_rotated_twice_ends_the_first_at_once(client, audience):
    destination = Destination.objects.create(audience=audience, name="sync")
    now = datetime.now(UTC)
    first = destination.issue_token(now=now)
    second = destination.issue_token(now=now)
    third = destination.issue_token(now=now)
    assert [members(client, audience, t) for t in (first, second, third)] == [401, 200, 200]


def test_revoking_ends_both_tokens_at_once(client, audience):
    destination = Destination.objects.create(audience=audience, name="sync")
    now = datetime.now(UTC)
    old = destination.issue_token(now=now)
    new = destination.issue_token(now=now)
    destination.revoke_tokens()
    assert [members(client, audience, t) for t in (old, new)] == [401, 401]


def test_tokens_are_stored_as_hashes_only(audience):
    destination = Destination.objects.create(audience=audience, name="sync")
    old = destination.issue_token(now=datetime.now(UTC))
    new = destination.issue_token(now=datetime.now(UTC))
    row = raw_row(destination)
    assert old not in row and new not in row


def raw_row(destination: Destination) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM campaigns_destination WHERE id = %s", [destination.id])
        return " ".join(str(value) for value in cursor.fetchone())


# --- webhook signing secrets -----------------------------------------------------


def verifies(secret: str, headers: dict, body: bytes) -> bool:
    try:
        standardwebhooks.Webhook(secret).verify(body, headers)
    except standardwebhooks.webhooks.WebhookVerificationError:
        return False
    return True


@pytest.mark.parametrize(("rotated_ago", "old_verifies"), [(INSIDE, True), (AFTER, False)])
def test_webhooks_carry_the_old_signature_for_the_overlap_then_only_the_new(
    audience, receiver, rotated_ago, old_verifies
):
    destination = Destination.objects.create(audience=audience, name="hook", url=receiver.url)
    old = destination.signing_secret
    now = datetime.now(UTC)
    new = destination.rotate_signing_secret(now=now - rotated_ago)
    assert new != old and new.startswith("whsec_")
    add_people(audience, 1, now=now)

    delivery.batch_changes(now=now)
    for delivery_id in delivery.claim_due(now=now):
        delivery.send_delivery(delivery_id, now=now)

    [(headers, body)] = receiver.delivered()
    assert verifies(new, headers, body)
    assert verifies(old, headers, body) is old_verifies
    assert len(headers["webhook-signature"].split(" ")) == (2 if old_verifies else 1)
    assert not verifies("whsec_" + base64.b64encode(b"x" * 32).decode(), headers, body)


def test_the_previous_signing_secret_is_encrypted_at_rest_too(audience):
    destination = Destination.objects.create(audience=audience, name="hook")
    old = destination.signing_secret
    new = destination.rotate_signing_secret(now=datetime.now(UTC))
    row = raw_row(destination)
    assert old not in row and new not in row
    assert Destination.objects.get(pk=destination.pk).signing_secrets(datetime.now(UTC)) == [
        new,
        old,
    ]


# --- the admin: shown once --------------------------------------------------------


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def test_a_new_destination_shows_its_signing_secret_once_then_a_hint(admin_client, audience):
    response = admin_client.post(
        "/admin/campaigns/destination/add/",
        {"audience": audience.id, "name": "Hook", "url": "https://receiver.test/hook",
         "enabled": "on"},
        follow=True,
    )  # fmt: skip
    destination = Destination.objects.get(name="Hook")
    secret = destination.signing_secret
    assert f"signing secret {secret}" in response.content.decode()

    page = admin_client.get(f"/admin/campaigns/destination/{destination.id}/change/")
    text = page.content.decode()
    assert page.status_code == 200
    assert secret not in text and destination.signing_secret_hint in text


def test_the_rotate_action_shows_the_new_secret_once_and_the_overlap(admin_client, audience):
    destination = Destination.objects.create(audience=audience, name="Hook")
    old = destination.signing_secret
    response = admin_client.post(
        "/admin/campaigns/destination/",
        {"action": "rotate_signing_secret", "_selected_action": [destination.id]},
        follow=True,
    )
    destination.refresh_from_db()
    new = destination.signing_secret
    assert new != old and f"new signing secret {new}" in response.content.decode()
    page = admin_client.get(f"/admin/campaigns/destination/{destination.id}/change/").content
    assert new.encode() not in page and old.encode() not in page
    assert b"the previous secret also signs until" in page


def test_the_revoke_action_ends_the_tokens(admin_client, client, audience):
    destination = Destination.objects.create(audience=audience, name="sync")
    token = destination.issue_token(now=datetime.now(UTC))
    admin_client.post(
        "/admin/campaigns/destination/",
        {"action": "revoke_tokens", "_selected_action": [destination.id]},
    )
    assert members(client, audience, token) == 401


# --- the ESP webhooks' basic-auth secret --------------------------------------------

POSTMARK_DELIVERY = {
    "RecordType": "Delivery",
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "Recipient": "john@example.com",
    "DeliveredAt": "2026-03-02T10:01:00Z",
    "Details": "Test delivery webhook details",
    "Tag": "",
    "ServerID": 23,
    "Metadata": {},
    "MessageStream": "outbound",
}


def basic_auth(credentials: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


def test_the_esp_webhook_secret_takes_a_new_and_an_old_pair_while_rotating():
    shown = run_manage(
        "shell", "-c", "from django.conf import settings; print(settings.ANYMAIL['WEBHOOK_SECRET'])",
        ANYMAIL_WEBHOOK_SECRET="new:pw-2, old:pw-1",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().splitlines()[-1] == "['new:pw-2', 'old:pw-1']"
    refused = run_manage("check", ANYMAIL_WEBHOOK_SECRET="new:pw-2,no-colon")
    assert refused.returncode == 2 and "ANYMAIL_WEBHOOK_SECRET" in refused.stderr


@override_settings(ANYMAIL={"WEBHOOK_SECRET": ["new:pw-2", "old:pw-1"]})
def test_both_pairs_are_accepted_while_rotating_and_nothing_else(client):
    def post(credentials: str) -> int:
        return client.post(
            "/anymail/postmark/tracking/", json.dumps(POSTMARK_DELIVERY),
            content_type="application/json", **basic_auth(credentials),
        ).status_code  # fmt: skip

    assert [post(c) for c in ("new:pw-2", "old:pw-1", "old:pw-2", "gone:pw-0")] == [
        200, 200, 400, 400,
    ]  # fmt: skip
