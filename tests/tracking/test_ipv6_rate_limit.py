"""The per-client rate limit counts an IPv6 client by its /64: one host can use any of
2^64 addresses, so counting single addresses would not limit it at all."""

from __future__ import annotations

import base64
import json

import pytest

from tests.factories import make_site, segment_event
from tracking import buffer
from tracking.keys import clear_key_cache

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(redis_client):
    clear_key_cache()
    return make_site()


def post(client, site, ip: str):
    return client.post(
        "/v1/batch", json.dumps({"batch": [segment_event()]}), content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{site.write_key}:".encode()).decode(),
        REMOTE_ADDR=ip,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("192.0.2.7", "192.0.2.7"),
        ("", "-"),
    ],
)
def test_the_client_key_is_the_ipv4_address_or_the_ipv6_64(ip, key):
    assert buffer.client_key(ip) == key


def test_addresses_of_one_ipv6_64_share_one_limit(client, site, settings):
    settings.INGEST_CLIENT_EVENTS_PER_MINUTE = 2
    assert post(client, site, "2001:db8:5:6::1").status_code == 200
    assert post(client, site, "2001:db8:5:6::2").status_code == 200
    # A third address of the same /64 is the same client, over its rate.
    assert post(client, site, "2001:db8:5:6:dead:beef:0:3").status_code == 429
    # Another /64 is another client.
    assert post(client, site, "2001:db8:5:7::1").status_code == 200
