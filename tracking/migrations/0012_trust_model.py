"""The trust model (tracking/trust.py): what each event proved, whether a profile's userId
was proven, and the site setting for browser order revenue.

Profiles that existed before are taken as proven (they were made under the old rules and
nothing says otherwise): the column is added with DEFAULT true, which PostgreSQL records
without rewriting the table, and the default is then set to false for new rows. The
event table's new column is added the same way (metadata only, on every partition)."""

from django.db import migrations, models

ADD_EVENT_TRUST = "ALTER TABLE tracking_event ADD COLUMN trust smallint NOT NULL DEFAULT 0"
DROP_EVENT_TRUST = "ALTER TABLE tracking_event DROP COLUMN trust"


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0011_ad_identifiers"),
    ]

    operations = [
        migrations.AddField(
            model_name="profile",
            name="user_id_proven",
            field=models.BooleanField(db_default=True, default=True),
        ),
        migrations.AlterField(
            model_name="profile",
            name="user_id_proven",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="site",
            name="require_identity_proof",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="Turn on once your pages send user_hash with every identify: a browser "
                "call without it then never gives its browser a userId, not even a new one. Off: "
                "a browser may claim a userId nobody has used yet (a first sign-in of an older "
                "install).",
                verbose_name="Require the identity proof for every userId",
            ),
        ),
        migrations.AddField(
            model_name="site",
            name="browser_order_revenue",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="Count the revenue of Order Completed events sent from the browser "
                "(the public write key). Off: only orders your server sends with the secret "
                "key carry revenue; browser orders still count as conversions.",
                verbose_name="Credit revenue from browser orders",
            ),
        ),
        migrations.RunSQL(ADD_EVENT_TRUST, DROP_EVENT_TRUST),
    ]
