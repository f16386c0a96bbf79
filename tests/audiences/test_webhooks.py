"""Webhook destinations: Standard Webhooks signatures, retries, dead letters, isolation."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import standardwebhooks
from django.db import IntegrityError, transaction

from campaigns.audiences import delivery, membership
from campaigns.models import Audience, AudienceChange, Delivery, Destination
from tests.audiences.conftest import T0, make_person
from tests.factories import make_site


class Receiver:
    """A real HTTP receiver on 127.0.0.1 that answers 500 to its first `fail` requests."""

    def __init__(self, fail: int = 0, delay: float = 0.0, status: int = 500):
        self.fail, self.delay, self.failure = fail, delay, status
        self.requests: list[tuple[dict, bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                status = receiver.failure if len(receiver.requests) < receiver.fail else 204
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body,
                                          status))  # fmt: skip
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[tuple[dict, bytes]]:
        return [(h, b) for h, b, status in self.requests if status < 300]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def dead_url():
    """A URL where nothing listens: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


@pytest.fixture
def audience(db):
    return Audience.objects.create(site=make_site(), name="Retarget", include_hashed_emails=True)


def add_people(audience, n: int, *, now=T0) -> list[int]:
    people = [make_person(audience.site, email=f"p{i}@example.com") for i in range(n)]
    membership.add_members([(audience.id, p.id) for p in people], now=now)
    return list(AudienceChange.objects.filter(audience=audience).values_list("id", flat=True))


def run_rounds(rounds: int, *, start=T0, step=timedelta(minutes=10)) -> None:
    """What the periodic task does, with the clock moved `step` between rounds."""
    now = start
    for _ in range(rounds):
        delivery.batch_changes(now=now)
        for delivery_id in delivery.claim_due(now=now):
            delivery.send_delivery(delivery_id, now=now)
        now += step


def changes_in(bodies) -> list[int]:
    return [c["id"] for body in bodies for c in json.loads(body)["data"]["changes"]]


def test_signatures_verify_with_the_standard_webhooks_package(audience, receivers):
    receiver = receivers()
    destination = Destination.objects.create(audience=audience, name="hook", url=receiver.url)
    add_people(audience, 2)
    run_rounds(1, start=datetime.now(UTC))  # receivers refuse timestamps 5 minutes off
    (headers, body), = receiver.delivered()  # fmt: skip
    verified = standardwebhooks.Webhook(destination.signing_secret).verify(body, headers)
    assert verified["type"] == "audience.changes"
    tampered = body.replace(b'"add"', b'"remove"')
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(destination.signing_secret).verify(tampered, headers)


def test_the_signature_covers_id_timestamp_and_body():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    # The example in the Standard Webhooks specification (spec/standard-delivery.md).
    assert delivery.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_a_receiver_that_fails_three_times_gets_each_change_exactly_once(audience, receivers):
    receiver = receivers(fail=3)
    Destination.objects.create(audience=audience, name="flaky", url=receiver.url)
    change_ids = add_people(audience, 7)
    delivery.batch_changes(now=T0, batch_size=3)  # batches of 3, 3 and 1 changes
    run_rounds(12, step=timedelta(hours=1))
    assert sorted(changes_in(b for _, b in receiver.delivered())) == sorted(change_ids)
    # The failed attempts were the first batch, retried under the same webhook-id.
    ids = [h["webhook-id"] for h, _, _ in receiver.requests]
    assert len(set(ids[:4])) == 1 and len(ids) == 6
    assert Delivery.objects.get(webhook_id=ids[0]).attempts == 4
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_retries_back_off_exponentially(audience, dead_url, settings):
    settings.AUDIENCE_WEBHOOK_BACKOFF_SECONDS = 30
    Destination.objects.create(audience=audience, name="down", url=dead_url)
    add_people(audience, 1)
    now = T0
    waits = []
    delivery.batch_changes(now=now)
    for _ in range(4):
        (delivery_id,) = delivery.claim_due(now=now)
        delivery.send_delivery(delivery_id, now=now)
        row = Delivery.objects.get(pk=delivery_id)
        waits.append((row.next_attempt_at - now).total_seconds())
        assert delivery.claim_due(now=row.next_attempt_at - timedelta(seconds=1)) == []
        now = row.next_attempt_at
    assert waits == [30, 60, 120, 240]
    assert "ConnectionRefusedError" in row.last_error or "refused" in row.last_error


def test_a_dead_receiver_ends_dead_without_holding_up_another_destination(
    audience, receivers, dead_url, settings
):
    settings.AUDIENCE_WEBHOOK_MAX_ATTEMPTS = 3
    healthy = receivers()
    Destination.objects.create(audience=audience, name="down", url=dead_url)
    Destination.objects.create(audience=audience, name="up", url=healthy.url)
    first = add_people(audience, 2)
    run_rounds(1)
    assert sorted(changes_in(b for _, b in healthy.delivered())) == first
    later = add_people(audience, 1, now=T0 + timedelta(minutes=5))
    run_rounds(6, start=T0 + timedelta(minutes=5), step=timedelta(hours=1))
    assert sorted(changes_in(b for _, b in healthy.delivered())) == later
    dead = Delivery.objects.filter(destination__name="down").order_by("id")
    assert [d.status for d in dead] == ["dead", "dead"]
    assert [d.attempts for d in dead] == [3, 3]
    assert set(
        Delivery.objects.filter(destination__name="up").values_list("status", flat=True)
    ) == {"delivered"}


def test_a_slow_receiver_times_out_and_is_retried(audience, receivers, settings):
    settings.AUDIENCE_WEBHOOK_TIMEOUT_SECONDS = 1
    slow = receivers(delay=2.5)
    Destination.objects.create(audience=audience, name="slow", url=slow.url)
    add_people(audience, 1)
    run_rounds(1)
    row = Delivery.objects.get()
    assert (row.status, row.attempts) == ("pending", 1)
    assert "timed out" in row.last_error.lower()


def test_a_redirect_is_a_failure_and_is_not_followed(audience, receivers):
    receiver = receivers(fail=1, status=307)
    Destination.objects.create(audience=audience, name="moved", url=receiver.url)
    add_people(audience, 1)
    run_rounds(1)
    row = Delivery.objects.get()
    assert (row.status, row.last_status_code) == ("pending", 307)
    assert len(receiver.requests) == 1


def test_changes_go_into_one_batch_per_destination_only(audience, receivers):
    destination = Destination.objects.create(audience=audience, name="d", url=receivers().url)
    add_people(audience, 3)
    assert delivery.batch_changes(now=T0) == 1
    assert delivery.batch_changes(now=T0) == 0
    first = Delivery.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(
            destination=destination, change_ids=first.change_ids,
            first_change_id=first.first_change_id, next_attempt_at=T0, created_at=T0,
        )  # fmt: skip


def test_a_claimed_delivery_is_not_claimed_again_while_it_is_being_sent(audience, dead_url):
    Destination.objects.create(audience=audience, name="d", url=dead_url)
    add_people(audience, 1)
    delivery.batch_changes(now=T0)
    assert len(delivery.claim_due(now=T0)) == 1
    assert delivery.claim_due(now=T0 + timedelta(seconds=5)) == []


def test_retrying_a_dead_delivery_sends_it_again(audience, receivers, settings):
    settings.AUDIENCE_WEBHOOK_MAX_ATTEMPTS = 1
    receiver = receivers(fail=1)
    Destination.objects.create(audience=audience, name="d", url=receiver.url)
    change_ids = add_people(audience, 2)
    run_rounds(1)
    row = Delivery.objects.get()
    assert row.status == "dead"
    assert delivery.retry_dead([row.id], now=T0 + timedelta(hours=1)) == 1
    run_rounds(1, start=T0 + timedelta(hours=1))
    assert changes_in(b for _, b in receiver.delivered()) == change_ids


def test_the_test_button_sends_a_signed_test_message(audience, receivers):
    receiver = receivers()
    destination = Destination.objects.create(audience=audience, name="d", url=receiver.url)
    assert delivery.send_test(destination, now=datetime.now(UTC)).ok
    (headers, body), = receiver.delivered()  # fmt: skip
    payload = standardwebhooks.Webhook(destination.signing_secret).verify(body, headers)
    assert payload["type"] == "audience.test"
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_the_signing_secret_is_encrypted_at_rest():
    from django.db import connection

    from campaigns.models import Audience, Destination
    from tests.factories import make_site

    destination = Destination.objects.create(
        audience=Audience.objects.create(site=make_site(), name="A"), name="D",
        url="https://receiver.example/hook",
    )  # fmt: skip
    secret = destination.signing_secret
    assert secret.startswith("whsec_")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM campaigns_destination WHERE id = %s", [destination.id])
        row = " ".join(str(value) for value in cursor.fetchone())
    assert secret not in row
    assert Destination.objects.get(id=destination.id).signing_secret == secret
