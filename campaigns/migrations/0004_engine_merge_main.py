# Merges the engine's migrations with main's (audiences and email, merged in 0003_email).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0003_email_merge_audiences"),
        ("campaigns", "0003_engine_lean_decision_keys"),
    ]

    operations = []
