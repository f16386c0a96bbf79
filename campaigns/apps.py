from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from campaigns import enrollment
        from tracking.signals import events_stored, profiles_merged

        # Both run inside the flusher's transaction (see campaigns.enrollment).
        events_stored.connect(enrollment.on_events_stored, dispatch_uid="campaigns.enroll")
        profiles_merged.connect(enrollment.on_profiles_merged, dispatch_uid="campaigns.merge")
