"""Rotating FIELD_ENCRYPTION_KEY: `reencrypt_keys` moves every secret at rest to the new key.

The test fills every kind of encrypted secret (sites' current and previous
secret keys, destinations' current and previous signing secrets), rotates the
key ("NEW,OLD"), runs the command, drops OLD, and reads everything back. It
also scans every text column of the database for Fernet tokens, so a secret
added later in a column the command does not know about fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from campaigns.models import Audience, Destination
from reengage import encryption
from reengage.management.commands.reencrypt_keys import encrypted_fields
from tests.factories import make_site
from tracking.keys import _key_from_redis, _load_key, clear_key_cache, lookup_key
from tracking.models import Site

pytestmark = pytest.mark.django_db

OLD = "o" * 40
NEW = "n" * 40
FERNET_PREFIX = "gAAAAA"  # every Fernet token starts with version byte 0x80 + timestamp


def fernet_columns() -> set[tuple[str, str]]:
    """(table, column) of every text column that holds a Fernet token in some row."""
    found = set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')"
        )
        for table, column in cursor.fetchall():
            cursor.execute(
                f'SELECT 1 FROM "{table}" WHERE "{column}" LIKE %s LIMIT 1', [FERNET_PREFIX + "%"]
            )
            if cursor.fetchone():
                found.add((table, column))
    return found


@pytest.fixture
def secrets_of_every_kind(redis_client):
    """Written under OLD: a site with a rotated key, a destination with a rotated secret."""
    now = datetime.now(UTC)
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        site = make_site()
        old_key = site.secret_key
        new_key = site.rotate_secret_key(now=now)
        destination = Destination.objects.create(
            audience=Audience.objects.create(site=site, name="A"), name="D"
        )
        old_secret = destination.signing_secret
        new_secret = destination.rotate_signing_secret(now=now)
    return site, (new_key, old_key), destination, [new_secret, old_secret]


def test_every_encrypted_column_is_one_the_command_reencrypts(secrets_of_every_kind):
    covered = {
        (model._meta.db_table, model._meta.get_field(name).column)
        for model, names in encrypted_fields()
        for name in names
    }
    assert fernet_columns() <= covered
    assert covered >= {
        ("tracking_site", "secret_key_encrypted"),
        ("tracking_site", "previous_secret_key_encrypted"),
        ("campaigns_destination", "signing_secret_encrypted"),
        ("campaigns_destination", "previous_signing_secret_encrypted"),
    }


def test_after_rotating_the_key_every_secret_still_decrypts_under_the_new_one_alone(
    secrets_of_every_kind,
):
    site, site_keys, destination, signing_secrets = secrets_of_every_kind
    now = datetime.now(UTC)
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        out = StringIO()
        call_command("reencrypt_keys", stdout=out)
    assert "of 1 sites" in out.getvalue() and "of 1 destinations" in out.getvalue()

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]):  # OLD dropped
        clear_key_cache()
        site = Site.objects.get(pk=site.pk)
        assert tuple(site.secret_keys(now)) == site_keys
        # Found by digest under the new key: both keys still ingest as trusted...
        assert all(_load_key(key).trusted for key in site_keys)
        # ...and Redis's fallback copy was rewritten under the new key.
        assert _key_from_redis(site_keys[0]).secret_keys == site_keys
        assert lookup_key(site.write_key).site_id == site.pk
        destination = Destination.objects.get(pk=destination.pk)
        assert destination.signing_secrets(now) == signing_secrets


def test_without_the_command_dropping_the_old_key_loses_the_secrets(secrets_of_every_kind):
    """The control: the test above passes because of the command, not by accident."""
    site, _, destination, _ = secrets_of_every_kind
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]):
        with pytest.raises(encryption.InvalidToken):
            Site.objects.get(pk=site.pk).secret_key  # noqa: B018
        with pytest.raises(encryption.InvalidToken):
            Destination.objects.get(pk=destination.pk).signing_secret  # noqa: B018
