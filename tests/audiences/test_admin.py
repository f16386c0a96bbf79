"""The audience admin: pages render, tag settings are checked, buttons do what they say."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from campaigns.audiences import delivery, membership
from campaigns.models import Audience, Delivery, Destination
from tests.audiences.conftest import make_person
from tests.audiences.test_webhooks import Receiver
from tests.factories import make_site


@pytest.fixture
def admin_client(client, db):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


@pytest.fixture
def audience(db):
    return Audience.objects.create(site=make_site(), name="A")


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_every_audience_page_renders(admin_client, audience):
    destination = Destination.objects.create(audience=audience, name="d", url="https://x.test/h")
    membership.add_members([(audience.id, make_person(audience.site).id)], now=datetime.now(UTC))
    delivery.batch_changes(now=datetime.now(UTC))
    for url in [
        "/admin/campaigns/audience/",
        f"/admin/campaigns/audience/{audience.id}/change/",
        "/admin/campaigns/audiencemember/",
        "/admin/campaigns/destination/",
        f"/admin/campaigns/destination/{destination.id}/change/",
        "/admin/campaigns/delivery/",
        f"/admin/campaigns/delivery/{Delivery.objects.get().id}/change/",
    ]:
        assert admin_client.get(url).status_code == 200, url
    page = admin_client.get(f"/admin/campaigns/audience/{audience.id}/change/").content.decode()
    assert f"/admin/campaigns/audience/{audience.id}/export/meta/" in page


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"tag_type": "image", "tag_url": "http://ads.example/p.gif"}, "tag_url"),
        ({"tag_type": "meta_pixel", "tag_event": ""}, "tag_event"),
    ],
)
def test_a_tag_without_what_it_needs_is_refused(audience, fields, error_field):
    for name, value in fields.items():
        setattr(audience, name, value)
    with pytest.raises(ValidationError) as caught:
        audience.full_clean()
    assert error_field in caught.value.message_dict


def test_the_send_test_action_reports_the_receivers_answer(admin_client, audience, receiver):
    destination = Destination.objects.create(audience=audience, name="hook", url=receiver.url)
    response = admin_client.post(
        "/admin/campaigns/destination/",
        {"action": "send_test", "_selected_action": [destination.id]},
        follow=True,
    )
    assert "Hook: answered 204" in response.content.decode()
    assert len(receiver.delivered()) == 1


def test_the_send_test_button_on_the_destination_page_sends_one(admin_client, audience, receiver):
    destination = Destination.objects.create(audience=audience, name="hook", url=receiver.url)
    page = admin_client.get(f"/admin/campaigns/destination/{destination.id}/change/")
    button = f"/admin/campaigns/destination/{destination.id}/send-test/"
    assert button.encode() in page.content
    assert admin_client.get(button).status_code == 405
    response = admin_client.post(button, follow=True)
    assert "Hook: answered 204" in response.content.decode()
    assert len(receiver.delivered()) == 1


def test_the_issue_token_action_shows_a_token_that_works_once(admin_client, audience):
    destination = Destination.objects.create(audience=audience, name="d")
    response = admin_client.post(
        "/admin/campaigns/destination/",
        {"action": "issue_token", "_selected_action": [destination.id]},
        follow=True,
    )
    text = response.content.decode()
    token = text.split("new token ", 1)[1].split(" ", 1)[0]
    assert token.startswith("rt_")
    api = admin_client.get(
        f"/api/v1/audiences/{audience.id}/members", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert api.status_code == 200
    destination.refresh_from_db()
    assert token not in destination.token_hash


def test_the_retry_action_revives_dead_deliveries(admin_client, audience):
    destination = Destination.objects.create(audience=audience, name="d", url="https://x.test/h")
    now = datetime.now(UTC)
    row = Delivery.objects.create(
        destination=destination, change_ids=[1], first_change_id=1, status="dead", attempts=10,
        next_attempt_at=now, created_at=now,
    )  # fmt: skip
    admin_client.post(
        "/admin/campaigns/delivery/", {"action": "retry", "_selected_action": [row.id]}
    )
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 0)
