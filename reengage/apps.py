from django.apps import AppConfig


class ReengageConfig(AppConfig):
    name = "reengage"
    verbose_name = "reengage"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from reengage import checks  # noqa: F401  registers the start-up checks
        from reengage.admin_theme import ensure_after_migrate
        from reengage.security.marketers import sync_after_migrate

        post_migrate.connect(sync_after_migrate, dispatch_uid="reengage.sync_marketers_group")
        post_migrate.connect(ensure_after_migrate, dispatch_uid="reengage.admin_theme")
