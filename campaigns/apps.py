from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from campaigns import audience_api, feedback, membership
        from tracking import views as tracking_views
        from tracking.signals import events_stored

        events_stored.connect(
            membership.leave_on_withdrawn_consent, dispatch_uid="campaigns.audiences.consent"
        )
        if audience_api.snippet_settings not in tracking_views.SETTINGS_EXTENSIONS:
            tracking_views.SETTINGS_EXTENSIONS.append(audience_api.snippet_settings)
        feedback.connect()  # email: ESP tracking webhooks, order attribution
