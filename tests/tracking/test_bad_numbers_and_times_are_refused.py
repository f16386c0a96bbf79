"""Times and numbers that used to answer 500, or 200 and then land in the dead letters,
are refused at the door with a 400 naming the field; honest events are unaffected."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from tests.factories import make_site, segment_event
from tracking import flush
from tracking.keys import clear_key_cache
from tracking.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(redis_client):
    clear_key_cache()
    flush.ensure_group(redis_client)
    return make_site()


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def send(client, site, body: dict | str, *, key=None, path="/v1/batch"):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(
        path, data, content_type="application/json",
        HTTP_AUTHORIZATION=basic(key or site.write_key),
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["write", "secret"])
@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_timestamp_outside_the_calendar_in_utc_is_a_400_naming_it(client, site, kind, moment):
    key = site.write_key if kind == "write" else site.secret_key
    response = send(client, site, {"batch": [segment_event(timestamp=moment)]}, key=key)
    assert response.status_code == 400
    assert response.json()["field"] == "batch[0].timestamp"


def test_a_sent_at_outside_the_calendar_is_a_400_naming_it(client, site):
    body = {"batch": [segment_event()], "sentAt": "0001-01-01T00:00:00+01:00"}
    response = send(client, site, body)
    assert response.status_code == 400
    assert response.json()["field"] == "sentAt"


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),  # received − 9998 years
        ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"),  # received + 9998 years
    ],
)
def test_a_clock_skew_past_the_calendar_is_a_400_naming_sent_at(client, site, timestamp, sent_at):
    response = send(
        client, site, {"batch": [segment_event(timestamp=timestamp)], "sentAt": sent_at}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "sentAt"
    event = segment_event(timestamp=timestamp, sentAt=sent_at)
    response = send(client, site, {"batch": [event]})
    assert response.status_code == 400
    assert response.json()["field"] == "batch[0].sentAt"


def test_1e999_next_to_a_good_event_is_a_400_and_nothing_is_dead_lettered(client, site):
    good = segment_event(event="Product Viewed")
    body = (
        '{"batch": [' + json.dumps(good) + ', {"type": "track", "event": "Product Viewed", '
        '"anonymousId": "a", "properties": {"rating": 1e999}}]}'
    )
    response = send(client, site, body)
    assert response.status_code == 400
    assert response.json()["field"] == "batch[1].properties.rating"
    # Nothing was acknowledged, so nothing can be lost: the client retries the good one.
    assert flush.flush_once().entries == 0
    assert flush.dead_letters() == []
    assert send(client, site, {"batch": [good]}).status_code == 200
    assert flush.flush_once().dead_letters == 0
    assert Event.objects.filter(site=site, message_id=good["messageId"]).count() == 1


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"price": "1e10000000"}, "properties.price"),
        ({"price": 1e300}, "properties.price"),
        ({"price": "NaN"}, "properties.price"),
        ({"price": "Infinity"}, "properties.price"),
        ({"price": "12,50"}, "properties.price"),
        ({"price": [1]}, "properties.price"),
        ({"price": True}, "properties.price"),
        ({"revenue": 10**40}, "properties.revenue"),
        ({"value": -2e9}, "properties.value"),
        ({"quantity": 10**7}, "properties.quantity"),
        ({"products": [{"price": 5}, {"price": "1e10000000"}]}, "properties.products[1].price"),
        ({"products": [{"quantity": "9" * 30}]}, "properties.products[0].quantity"),
    ],
)
def test_an_amount_that_would_reach_an_email_must_be_a_sane_number(client, site, properties, field):
    response = send(client, site, {"batch": [segment_event(properties=properties)]})
    assert response.status_code == 400, response.json()
    assert response.json()["field"] == f"batch[0].{field}"


def test_honest_prices_as_numbers_or_decimal_strings_are_stored(client, site):
    properties = {
        "price": "19.99", "revenue": 1234.5, "quantity": 2, "value": 0, "discount": -5,
        "products": [{"price": 49.5, "quantity": 1}, {"price": "20", "quantity": "3"}],
    }  # fmt: skip
    event = segment_event(properties=properties, timestamp=datetime.now(UTC).isoformat())
    assert send(client, site, {"batch": [event]}).status_code == 200
    flush.flush_once()
    stored = Event.objects.get(site=site, message_id=event["messageId"])
    assert stored.properties["products"][1]["price"] == "20"
