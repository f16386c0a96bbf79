"""Sites' secret keys: encrypted at rest, found by digest, shown once, rotatable."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils.timezone import now as tz_now

from tests.factories import make_site, segment_event
from tests.test_settings import run_manage
from tracking import flush
from tracking.keys import _key_from_redis, _load_key, clear_key_cache, lookup_key
from tracking.models import Profile, Site

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh(redis_client):
    clear_key_cache()
    yield
    clear_key_cache()


def raw_site_row(site: Site) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(s)::text FROM tracking_site s WHERE id = %s", [site.id])
        return cursor.fetchone()[0]


def post_batch(client, key: str, *events: dict):
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return client.post(
        "/v1/batch", json.dumps({"batch": list(events)}), content_type="application/json",
        HTTP_AUTHORIZATION=auth,
    )  # fmt: skip


def identify(email: str, **traits) -> dict:
    return segment_event("identify", userId="u1", traits={"email": email, **traits})


def test_the_database_never_holds_a_plaintext_secret_key():
    site = make_site()
    old = site.secret_key
    new = site.rotate_secret_key()
    row = raw_site_row(site)
    assert old not in row and new not in row
    assert site.write_key in row  # public, stays plain
    columns = {c.name for c in connection.introspection.get_table_description(
        connection.cursor(), "tracking_site")}  # fmt: skip
    assert "secret_key" not in columns and "previous_secret_key" not in columns


def test_the_secret_key_reads_back_from_a_fresh_instance():
    site = make_site()
    assert Site.objects.get(id=site.id).secret_key == site.secret_key
    assert site.secret_key.startswith("sk_")


def test_the_secret_key_ingests_as_trusted(client):
    site = make_site()
    assert post_batch(client, site.secret_key, identify("ann@example.com")).status_code == 200
    flush.flush_once()
    assert Profile.objects.get(site=site, user_id="u1").email_verified is True


def test_a_user_hash_under_the_secret_key_verifies_a_browser_identify(client):
    site = make_site()
    user_hash = site.user_hash("Ann@Example.com")
    expected = hmac.new(site.secret_key.encode(), b"ann@example.com", hashlib.sha256)
    assert user_hash == expected.hexdigest()
    event = identify("Ann@Example.com", user_hash=user_hash)
    assert post_batch(client, site.write_key, event).status_code == 200
    flush.flush_once()
    assert Profile.objects.get(site=site, user_id="u1").email_verified is True


def test_a_rotated_key_works_during_the_overlap(client):
    site = make_site()
    old = site.secret_key
    new = site.rotate_secret_key(overlap=timedelta(hours=1))
    clear_key_cache()
    assert post_batch(client, old, segment_event()).status_code == 200
    assert post_batch(client, new, segment_event()).status_code == 200
    assert _load_key(old).trusted and _load_key(old).verify_user_hash(
        "a@b.c", hmac.new(old.encode(), b"a@b.c", hashlib.sha256).hexdigest()
    )


def test_a_rotated_key_stops_working_after_the_overlap(client):
    site = make_site()
    old = site.secret_key
    # Rotated two hours ago with a one-hour overlap.
    new = site.rotate_secret_key(overlap=timedelta(hours=1), now=tz_now() - timedelta(hours=2))
    clear_key_cache()
    assert post_batch(client, old, segment_event()).status_code == 401
    assert post_batch(client, new, segment_event()).status_code == 200
    assert _load_key(new).secret_keys == (new,)


def test_looking_up_a_secret_key_is_one_query(django_assert_num_queries):
    site = make_site()
    with django_assert_num_queries(1):
        assert _load_key(site.secret_key).site_id == site.id


def test_redis_copy_holds_neither_the_secret_key_nor_its_name(redis_client):
    site = make_site()
    old = site.secret_key
    new = site.rotate_secret_key()
    clear_key_cache()
    lookup_key(new)
    lookup_key(site.write_key)
    stored = b" ".join(
        name + b" " + (redis_client.get(name) or b"") for name in redis_client.scan_iter("*")
    )
    assert stored  # the copies exist
    assert old.encode() not in stored and new.encode() not in stored
    # ...and the fallback still yields the plaintext keys for user_hash checks.
    assert _key_from_redis(new).secret_keys == (new, old)
    assert _key_from_redis(site.write_key).trusted is False


def test_a_new_encryption_key_still_reads_old_rows_until_reencrypted(client):
    site = make_site()
    secret = site.secret_key
    old_row = raw_site_row(site)
    new_first = ["n" * 40, *settings.FIELD_ENCRYPTION_KEYS]
    with override_settings(FIELD_ENCRYPTION_KEYS=new_first):
        assert _load_key(secret).trusted  # found by the old key's digest
        out = StringIO()
        call_command("reencrypt_keys", stdout=out)
        assert "secret_key_encrypted, previous_secret_key_encrypted of 1 sites" in out.getvalue()
        assert raw_site_row(site) != old_row
        with override_settings(FIELD_ENCRYPTION_KEYS=["n" * 40]):  # old key dropped
            assert Site.objects.get(id=site.id).secret_key == secret
            assert _load_key(secret).site_id == site.id


def test_the_admin_shows_a_new_site_key_once_then_masked(admin_client):
    response = admin_client.post(
        "/admin/tracking/site/add/",
        {"name": "New shop", "domains": "shop.test", "timezone": "UTC", "postal_address": "",
         "consent_mode": "none", "anonymize_ip": "on", "retention_days": 395,
         "cookie_days": 395, "events_per_minute": 60000},
        follow=True,
    )  # fmt: skip
    site = Site.objects.get(name="New shop")
    assert site.secret_key in response.content.decode()
    page = admin_client.get(f"/admin/tracking/site/{site.id}/change/").content.decode()
    assert site.secret_key not in page and site.secret_key[-4:] in page


def test_the_admin_rotate_action_shows_the_new_key_once(admin_client):
    site = make_site()
    old = site.secret_key
    response = admin_client.post(
        "/admin/tracking/site/",
        {"action": "rotate_secret_key", "_selected_action": [site.id]},
        follow=True,
    )
    site.refresh_from_db()
    assert site.secret_key != old
    assert site.secret_key in response.content.decode()
    assert site.secret_keys() == [site.secret_key, old]


def test_production_refuses_to_start_without_a_field_encryption_key():
    result = run_manage(
        "check", DEBUG="0", SECRET_KEY="x" * 50, ANYMAIL_WEBHOOK_SECRET="a:b",
        FIELD_ENCRYPTION_KEY="",
    )  # fmt: skip
    assert result.returncode == 2
    assert "FIELD_ENCRYPTION_KEY must be set when DEBUG is off" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_short_field_encryption_key_is_refused():
    result = run_manage("check", FIELD_ENCRYPTION_KEY="short")
    assert result.returncode == 2
    assert "FIELD_ENCRYPTION_KEY" in result.stderr and "32+" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_existing_plaintext_keys_and_reverses():
    from django.db.migrations.executor import MigrationExecutor

    before = [("tracking", "0004_site_secret_key_encryption")]
    after = [("tracking", "0006_remove_plaintext_secret_keys")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO tracking_site (name, domains, write_key, secret_key, "
                "previous_secret_key, previous_secret_key_expires_at, secret_key_digest, "
                "secret_key_encrypted, previous_secret_key_digest, previous_secret_key_encrypted, "
                "consent_mode, anonymize_ip, timezone, retention_days, cookie_days, "
                "postal_address, events_per_minute, created_at) VALUES ('Old', '{}', 'wk_old', "
                "'sk_plain_old', 'sk_plain_prev', now() + interval '1 hour', '', '', '', '', "
                "'none', true, 'UTC', 395, 395, '', 60000, now()) RETURNING id"
            )
            site_id = cursor.fetchone()[0]
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        # Only the columns that exist at `after` (later migrations add others).
        site = Site.objects.defer(
            "browser_order_revenue", "require_identity_proof", "cart_path", "locale"
        ).get(id=site_id)
        assert "sk_plain" not in raw_site_row(site)
        assert site.secret_keys() == ["sk_plain_old", "sk_plain_prev"]
        clear_key_cache()
        assert _load_key("sk_plain_prev").site_id == site_id

        executor = MigrationExecutor(connection)
        executor.migrate(before)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT secret_key, previous_secret_key FROM tracking_site WHERE id = %s",
                [site_id],
            )
            assert cursor.fetchone() == ("sk_plain_old", "sk_plain_prev")
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_a_redis_copy_without_encrypted_keys_is_unavailable_not_a_crash(redis_client):
    from tracking import buffer
    from tracking.keys import _copy_name

    site = make_site()
    old_format = {"site_id": site.id, "trusted": True, "domains": [], "anonymize_ip": True,
                  "retention_days": 395, "secret_keys": [site.secret_key],
                  "events_per_minute": 60000}  # fmt: skip
    redis_client.set(_copy_name(site.secret_key), json.dumps(old_format))
    with pytest.raises(buffer.StorageUnavailable):
        _key_from_redis(site.secret_key)
