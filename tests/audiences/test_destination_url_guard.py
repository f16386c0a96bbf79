"""Destination URLs cannot point reengage at internal services (SSRF), in the form or at send."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User

from campaigns.audiences import delivery, membership
from campaigns.models import Audience, Delivery, Destination
from tests.audiences.conftest import make_person
from tests.audiences.test_webhooks import Receiver
from tests.factories import make_site
from tests.test_outbound import Listener

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def admin_client(client, db):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


@pytest.fixture
def audience(db):
    return Audience.objects.create(site=make_site(), name="A")


@pytest.fixture
def listener(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = False
    made = Listener()
    yield made
    made.close()


def add_form(admin_client, audience, url):
    return admin_client.post(
        "/admin/campaigns/destination/add/",
        {"audience": audience.id, "name": "hook", "url": url, "enabled": "on"},
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fd00:ec2::254]/",
        "http://127.0.0.1:6379/",
        "http://[::1]:5432/",
        "http://localhost:8000/admin/",
        "http://10.0.0.8/hook",
        "ftp://example.com/hook",
    ],
)
def test_the_destination_form_refuses_an_internal_or_non_https_url(
    admin_client, audience, listener, url
):
    response = add_form(admin_client, audience, url)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "url" in errors, errors
    assert "not allowed" in errors["url"][0] or "valid URL" in errors["url"][0]
    assert not Destination.objects.exists()


def test_the_destination_form_accepts_a_public_https_url(admin_client, audience, listener):
    response = add_form(admin_client, audience, "https://hooks.example.com/reengage")
    assert response.status_code == 302
    assert Destination.objects.get().url == "https://hooks.example.com/reengage"


def test_send_test_to_a_loopback_url_is_refused_and_reaches_nothing(
    admin_client, audience, listener
):
    # A row written before the form checked URLs (or straight to the database).
    destination = Destination.objects.create(
        audience=audience, name="hook", url=f"http://127.0.0.1:{listener.port}/"
    )
    response = admin_client.post(
        f"/admin/campaigns/destination/{destination.id}/send-test/", follow=True
    )
    text = response.content.decode()
    assert "Hook: failed (refused: 127.0.0.1 is a loopback address" in text
    assert listener.connections == 0


def test_send_test_shows_the_status_code_not_the_reply(admin_client, audience, settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    receiver = Receiver(fail=1, status=500)
    try:
        destination = Destination.objects.create(audience=audience, name="hook", url=receiver.url)
        response = admin_client.post(
            f"/admin/campaigns/destination/{destination.id}/send-test/", follow=True
        )
    finally:
        receiver.close()
    text = response.content.decode()
    assert "Hook: failed (HTTP 500)" in text
    assert "Server Error" not in text  # BaseHTTPRequestHandler's reason phrase / body


def test_the_worker_does_not_deliver_to_a_metadata_or_loopback_url(audience, listener):
    for url in ("http://169.254.169.254/latest/", f"http://localhost:{listener.port}/"):
        Destination.objects.create(audience=audience, name=url, url=url)
    membership.add_members([(audience.id, make_person(audience.site).id)], now=NOW)
    delivery.batch_changes(now=NOW)
    for delivery_id in delivery.claim_due(now=NOW):
        assert delivery.send_delivery(delivery_id, now=NOW) == Delivery.Status.PENDING
    errors = sorted(Delivery.objects.values_list("last_error", flat=True))
    assert all(e.startswith("refused:") for e in errors), errors
    assert listener.connections == 0
