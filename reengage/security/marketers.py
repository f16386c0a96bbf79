"""The `Marketers` permission group: campaigns, templates and audiences, never sites.

Marketers configure campaigns, steps, templates and audiences, read messages and
people, and cannot open `tracking.Site` (which holds the keys). A staff user in
this group (is_staff, no superuser) gets exactly this. The group is created by
migration tracking 0003 and kept complete after every `migrate` (models that
other apps add later get their permissions here), or on demand with
`manage.py sync_marketers_group`.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.db.models import Q

GROUP_NAME = "Marketers"

EDIT = ("view", "add", "change")
VIEW = ("view",)

# app label → model name → actions. Anything not listed is not granted: in
# particular nothing on tracking.Site (keys) nor on campaigns.Destination and
# Delivery (webhook URLs and signing secrets, pull-API tokens: the operator's).
PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "campaigns": {
        "campaign": EDIT,
        "step": EDIT,
        "emailtemplate": EDIT,
        "audience": EDIT,
        "audiencerule": EDIT,  # edited inline on the audience
        "message": EDIT,
        "suppression": EDIT,
        "stepvariant": EDIT,  # A/B variants of a step's template
        "steppromo": EDIT,
        "promopool": EDIT,
        "promocode": ("view", "add"),  # imported into a pool from a CSV
        "campaignoptout": VIEW,
        "emailsettings": VIEW,  # per-site tracking and sending rate: the operator's
        "emailevent": VIEW,
        "attribution": VIEW,
        "enrollment": VIEW,
        "decision": VIEW,
        "audiencemember": VIEW,
        "audiencechange": VIEW,
        "sitepolicy": VIEW,
        # The development mailbox: a marketer checks there what their campaign sent.
        "devmail": VIEW,
    },
    "tracking": {
        "profile": VIEW,
        "visitor": VIEW,
    },
}


def wanted_permissions() -> list[tuple[str, str]]:
    """(app label, codename) pairs the group should hold."""
    return [
        (app, f"{action}_{model}")
        for app, models in PERMISSIONS.items()
        for model, actions in models.items()
        for action in actions
    ]


def sync_marketers_group(apps=global_apps, using: str = "default") -> list[str]:
    """Create the group if needed and grant every wanted permission that exists.

    Returns the permissions newly granted ("app.codename"). Permissions of models
    that do not exist (yet) are skipped; grants made by hand are left alone.
    """
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(using).get_or_create(name=GROUP_NAME)
    match = Q(pk__in=[])
    for app, codename in wanted_permissions():
        match |= Q(content_type__app_label=app, codename=codename)
    available = Permission.objects.using(using).filter(match)
    missing = list(
        available.exclude(pk__in=group.permissions.values("pk")).select_related("content_type")
    )
    group.permissions.add(*missing)
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in missing)


def sync_after_migrate(sender, using: str = "default", apps=global_apps, **kwargs) -> None:
    """post_migrate: runs after each app's permissions are created, so a model that a
    later migration adds joins the group as soon as it exists."""
    # `apps` is the migration state here, whose app configs know only labels.
    try:
        apps.get_model("auth", "Permission")
    except LookupError:
        return
    sync_marketers_group(apps, using=using)
