"""Sites: createsite, keys, domains, partitions and retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tests.factories import make_site
from tracking import partitions
from tracking.models import Site

pytestmark = pytest.mark.django_db


def test_createsite_prints_keys_as_json():
    out = StringIO()
    call_command("createsite", "My shop", "--domain", "shop.example.com", "--json", stdout=out)
    data = json.loads(out.getvalue())
    site = Site.objects.get(id=data["id"])
    assert data["write_key"] == site.write_key and data["write_key"].startswith("wk_")
    assert data["secret_key"] == site.secret_key and data["secret_key"].startswith("sk_")
    assert site.domains == ["shop.example.com"]
    assert data["snippet"]


def test_createsite_prints_the_snippet_for_humans():
    out = StringIO()
    call_command("createsite", "My shop", "--domain", "shop.example.com", stdout=out)
    assert "write key:" in out.getvalue() and "secret key:" in out.getvalue()


@pytest.mark.parametrize("domain", ["https://shop.example.com", "shop.example.com/path", ""])
def test_createsite_refuses_a_domain_that_is_not_a_host(domain):
    with pytest.raises(CommandError, match="domains"):
        call_command("createsite", "Shop", "--domain", domain)


def test_createsite_refuses_an_unknown_time_zone():
    with pytest.raises(CommandError, match="time zone"):
        call_command("createsite", "Shop", "--timezone", "Mars/Olympus")


def test_user_hash_is_the_hmac_of_the_lower_cased_email():
    import hashlib
    import hmac

    site = make_site()
    expected = hmac.new(site.secret_key.encode(), b"ann@example.com", hashlib.sha256).hexdigest()
    assert site.user_hash(" Ann@Example.COM ") == expected


def test_a_rotated_secret_key_expires_after_the_overlap():
    site = make_site()
    old = site.secret_key
    now = datetime.now(UTC)
    site.rotate_secret_key(overlap=timedelta(hours=1), now=now)
    assert site.secret_keys(now) == [site.secret_key, old]
    assert site.secret_keys(now + timedelta(hours=2)) == [site.secret_key]


def test_partitions_are_created_ahead_and_rows_move_out_of_the_default():
    far = datetime(2031, 5, 17, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tracking_event (site_id, message_id, type, timestamp, received_at) "
            "VALUES (1, 'm', 'track', %s, %s)",
            [far, far],
        )
    created = partitions.ensure_partitions(far, months_back=0, months_ahead=1)
    assert created == ["tracking_event_y2031m05", "tracking_event_y2031m06"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tracking_event_y2031m05")
        assert cursor.fetchone() == (1,)
        cursor.execute("SELECT count(*) FROM tracking_event_default")
        assert cursor.fetchone() == (0,)


def test_old_partitions_are_dropped():
    long_ago = datetime(2020, 1, 10, tzinfo=UTC)
    partitions.ensure_partitions(long_ago, months_back=0, months_ahead=0)
    dropped = partitions.drop_partitions_before(datetime(2020, 3, 1, tzinfo=UTC))
    assert dropped == ["tracking_event_y2020m01"]
