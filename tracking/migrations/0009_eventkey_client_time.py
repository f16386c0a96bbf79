"""The dedupe key gains the client's timestamp, ahead of messageId (tracking/storage.py).

Keys stored before keep working: they get the LEGACY_TIME sentinel, and the flusher
checks messageIds against them while any remain inside the dedupe window. Rebuilding
the primary key locks the key table (and so the flusher; events wait in Redis) for
the time it takes: 2 million keys took about 4 s here (a 2-core machine, under load).
"""

from django.db import migrations, models

FORWARD = """
ALTER TABLE tracking_eventkey
    ADD COLUMN dedupe_at timestamptz NOT NULL DEFAULT '0001-01-01T00:00:00+00:00';
ALTER TABLE tracking_eventkey ALTER COLUMN dedupe_at DROP DEFAULT;
ALTER TABLE tracking_eventkey DROP CONSTRAINT tracking_eventkey_pkey;
ALTER TABLE tracking_eventkey ADD CONSTRAINT tracking_eventkey_pkey
    PRIMARY KEY (site_id, dedupe_at, message_id);
"""

BACKWARD = """
DELETE FROM tracking_eventkey a USING tracking_eventkey b
    WHERE a.site_id = b.site_id AND a.message_id = b.message_id AND a.ctid > b.ctid;
ALTER TABLE tracking_eventkey DROP CONSTRAINT tracking_eventkey_pkey;
ALTER TABLE tracking_eventkey DROP COLUMN dedupe_at;
ALTER TABLE tracking_eventkey ADD CONSTRAINT tracking_eventkey_pkey
    PRIMARY KEY (site_id, message_id);
"""


class Migration(migrations.Migration):
    dependencies = [("tracking", "0008_profile_merged_at_email_search")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[
                migrations.AddField(
                    model_name="eventkey",
                    name="dedupe_at",
                    field=models.DateTimeField(),
                    preserve_default=False,
                ),
                migrations.AlterField(
                    model_name="eventkey",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "site_id",
                        "dedupe_at",
                        "message_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
            ],
        ),
    ]
