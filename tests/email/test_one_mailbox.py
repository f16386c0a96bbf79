"""A "verified" address must be one mailbox: "a@x, b@y" would be sent to two people
while only the first is checked against suppressions. Refused at ingest (400 naming
the field) and never sent if such an address is already stored."""

from __future__ import annotations

import base64
import json

import pytest
from django.core import mail

from campaigns.email import sending
from campaigns.models import Message
from tests.email.conftest import make_campaign, queue_messages
from tests.factories import make_site, segment_event
from tracking.ingest import is_one_mailbox
from tracking.keys import clear_key_cache

pytestmark = pytest.mark.django_db

NOT_ONE = [
    "a@x.example, b@y.example",
    "a@x.example;b@y.example",
    "Eve <eve@evil.example>",
    "a@x.example\nBcc: b@y.example",
    "a b@x.example",
    '"a,b"@x.example',
    "no-at-sign",
    "a@",
]


@pytest.mark.parametrize("address", NOT_ONE)
def test_it_is_not_one_mailbox(address):
    assert not is_one_mailbox(address)


@pytest.mark.parametrize("address", ["ann@example.com", "Ann.Lee+shop@mail.example.co.uk"])
def test_a_plain_address_is_one_mailbox(address):
    assert is_one_mailbox(address)


@pytest.mark.parametrize("address", NOT_ONE[:4])
def test_ingest_refuses_it_as_a_verified_email(client, redis_client, address):
    clear_key_cache()
    site = make_site()
    body = {"batch": [segment_event("identify", userId="u1", traits={"email": address})]}
    response = client.post(
        "/v1/batch", json.dumps(body), content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{site.secret_key}:".encode()).decode(),
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["field"] == "batch[0].traits.email"


def test_a_stored_address_that_is_two_is_never_sent(redis_client):
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)
    two = "person0@example.com, attacker@evil.example"
    message.profile.email = two
    message.profile.save()
    Message.objects.filter(pk=message.pk).update(to_email=two)

    assert sending.send_one(message.pk) == "suppressed"

    assert mail.outbox == []
    message.refresh_from_db()
    assert message.status == "suppressed" and "not one mailbox" in message.error
