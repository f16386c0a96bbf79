from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from campaigns import feedback, membership
        from tracking.signals import events_stored

        events_stored.connect(
            membership.leave_on_withdrawn_consent, dispatch_uid="campaigns.audiences.consent"
        )
        feedback.connect()  # email: ESP tracking webhooks, order attribution
