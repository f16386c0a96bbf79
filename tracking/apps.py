from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Tracking"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from tracking.models import Site

        post_save.connect(_site_saved, sender=Site, dispatch_uid="tracking.site_saved")


def _site_saved(sender, instance, **kwargs) -> None:
    from django.db import transaction

    from tracking.keys import refresh_keys

    keys = [instance.write_key, instance.secret_key, instance.previous_secret_key]
    transaction.on_commit(lambda: refresh_keys(keys))
