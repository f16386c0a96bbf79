"""The Marketers group: campaigns, templates and audiences; never sites or their keys."""

import importlib

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal

from reengage.security import marketers
from tests.factories import make_site

pytestmark = pytest.mark.django_db


def granted() -> set[str]:
    group = Group.objects.get(name="Marketers")
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}


@pytest.fixture
def marketer(django_user_model, client):
    user = django_user_model.objects.create_user("mia", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    return user


def test_the_group_exists_after_migrate_with_campaign_and_audience_permissions():
    permissions = granted()
    for codename in ("view_campaign", "add_campaign", "change_campaign", "change_step",
                     "change_emailtemplate", "change_audience", "change_message",
                     "change_suppression", "view_enrollment"):  # fmt: skip
        assert f"campaigns.{codename}" in permissions
    assert {"tracking.view_profile", "tracking.view_visitor"} <= permissions
    assert "campaigns.delete_campaign" not in permissions


def test_the_group_has_no_permission_on_sites():
    assert not {p for p in granted() if p.endswith("_site")}


def test_a_marketer_gets_403_on_the_site_admin(client, marketer):
    site = make_site()
    assert client.get("/admin/tracking/site/").status_code == 403
    assert client.get(f"/admin/tracking/site/{site.id}/change/").status_code == 403
    assert client.get("/admin/tracking/site/add/").status_code == 403
    index = client.get("/admin/").text
    assert "/admin/tracking/site/" not in index
    assert site.write_key not in index


def test_a_marketer_can_read_profiles_but_not_change_them(client, marketer):
    assert client.get("/admin/tracking/profile/").status_code == 200
    assert marketer.has_perm("tracking.view_profile")
    assert not marketer.has_perm("tracking.change_profile")


def test_a_marketer_holds_the_campaign_permissions(marketer):
    assert marketer.has_perm("campaigns.change_campaign")
    assert marketer.has_perm("campaigns.add_emailtemplate")
    assert not marketer.has_perm("tracking.view_site")
    assert not marketer.has_perm("auth.change_user")


def test_a_marketer_can_read_the_dev_mailbox_but_not_change_it(client, marketer):
    assert client.get("/admin/campaigns/devmail/").status_code == 200
    assert not marketer.has_perm("campaigns.change_devmail")


def test_a_marketer_cannot_manage_users_or_two_factor_devices(client, marketer):
    assert client.get("/admin/auth/user/").status_code == 403
    assert client.get("/admin/otp_totp/totpdevice/").status_code == 403


def test_a_flush_and_its_post_migrate_complete_the_group_too():
    Group.objects.get(name="Marketers").permissions.clear()
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    assert granted() == {f"{app}.{codename}" for app, codename in marketers.wanted_permissions()}


def test_the_sync_command_restores_missing_permissions(capsys):
    group = Group.objects.get(name="Marketers")
    group.permissions.remove(Permission.objects.get(codename="change_campaign"))
    call_command("sync_marketers_group")
    assert "granted campaigns.change_campaign" in capsys.readouterr().out
    assert "campaigns.change_campaign" in granted()
    call_command("sync_marketers_group")
    assert "already complete" in capsys.readouterr().out


def test_every_migrate_completes_the_group():
    # The real command: its post_migrate carries the migration state's apps.
    Group.objects.get(name="Marketers").permissions.clear()
    call_command("migrate", verbosity=0)
    assert granted() == {f"{app}.{codename}" for app, codename in marketers.wanted_permissions()}


def test_permissions_of_models_that_do_not_exist_yet_are_skipped(monkeypatch):
    monkeypatch.setitem(marketers.PERMISSIONS, "campaigns", {
        **marketers.PERMISSIONS["campaigns"], "notyetamodel": marketers.EDIT,
    })  # fmt: skip
    Group.objects.get(name="Marketers").permissions.clear()
    added = marketers.sync_marketers_group()
    assert "campaigns.change_campaign" in added
    assert not [p for p in added if "notyetamodel" in p]


def test_grants_made_by_hand_are_left_alone():
    group = Group.objects.get(name="Marketers")
    group.permissions.add(Permission.objects.get(codename="delete_step"))
    marketers.sync_marketers_group()
    assert "campaigns.delete_step" in granted()


def test_the_migration_creates_the_group_on_a_database_without_permissions():
    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("tracking.migrations.0003_security_marketers_group")
    Group.objects.filter(name="Marketers").delete()
    Permission.objects.filter(content_type__app_label__in=["campaigns", "tracking"]).delete()
    with connection.schema_editor() as editor:
        migration.create_group(apps, editor)
    frozen = {
        f"{app}.{action}_{model}"
        for app, models in migration.PERMISSIONS.items()
        for model, actions in models.items()
        for action in actions
    }
    assert granted() == frozen
    assert "campaigns.change_campaign" in frozen


def test_a_marketer_can_open_the_admin_of_every_model_the_group_grants(client, marketer):
    """Covers the campaign, template and audience admins as soon as they are registered."""
    from django.contrib import admin

    granted_models = [
        model
        for model in admin.site._registry
        if model._meta.model_name in marketers.PERMISSIONS.get(model._meta.app_label, {})
    ]
    assert granted_models  # at least the profile admin
    for model in granted_models:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url


def test_a_marketer_edits_audience_rules_but_never_sees_destinations(client, marketer):
    assert marketer.has_perm("campaigns.change_audiencerule")
    assert client.get("/admin/campaigns/destination/").status_code == 403
    assert client.get("/admin/campaigns/delivery/").status_code == 403
