"""The Marketers permission group (security work; see reengage/security/marketers.py).

Permissions are normally created after all migrations ran (post_migrate), so on a
fresh database this migration creates the permissions of tracking and campaigns
first. It grants those of the wanted permissions that exist; models added later
join the group through the post_migrate handler or `manage.py
sync_marketers_group`. The list is frozen here, as a migration's data must be.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.models import Q

GROUP_NAME = "Marketers"
EDIT = ("view", "add", "change")
VIEW = ("view",)
PERMISSIONS = {
    "campaigns": {
        "campaign": EDIT, "step": EDIT, "emailtemplate": EDIT, "audience": EDIT,
        "message": EDIT, "suppression": EDIT, "enrollment": VIEW, "decision": VIEW,
        "audiencemember": VIEW, "audiencechange": VIEW, "sitepolicy": VIEW,
    },
    "tracking": {"profile": VIEW, "visitor": VIEW},
}


def create_group(apps, schema_editor):
    db = schema_editor.connection.alias
    for label in PERMISSIONS:
        if global_apps.is_installed(label):
            create_permissions(global_apps.get_app_config(label), verbosity=0, using=db, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(db).get_or_create(name=GROUP_NAME)
    match = Q(pk__in=[])
    for app, models in PERMISSIONS.items():
        for model, actions in models.items():
            for action in actions:
                match |= Q(content_type__app_label=app, codename=f"{action}_{model}")
    group.permissions.add(*Permission.objects.using(db).filter(match))


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(
        name=GROUP_NAME
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0002_event_table"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]
