# Merges the engine's migrations with the audiences' (both branch from 0001).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0002_audiences_rules_destinations_tags"),
        ("campaigns", "0003_engine_lean_decision_keys"),
    ]

    operations = []
