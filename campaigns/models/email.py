"""Email templates, the Message outbox, the suppression list and email feedback.

A Message row is the outbox entry for one email. Its life:
queued → sending (claimed, committed before the ESP is called) → sent, then
delivered / opened / clicked / bounced / complained / unsubscribed as the ESP's
webhooks report; or suppressed / failed. See campaigns/email/sending.py.
"""

from __future__ import annotations

import hashlib

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.timezone import now as tz_now


def email_hash(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


class EmailTemplate(models.Model):
    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=300)
    preheader = models.CharField(max_length=300, blank=True, default="")
    html = models.TextField()
    text = models.TextField(blank=True, default="", help_text="Generated from HTML when empty.")
    from_name = models.CharField(max_length=200, blank=True, default="")
    from_email = models.EmailField(blank=True, default="")
    reply_to = models.EmailField(blank=True, default="")
    created_at = models.DateTimeField(default=tz_now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Refuses tags that escape the sandbox and syntax errors, naming the field.
        from campaigns.email.rendering import validate_template

        validate_template(self)


class Message(models.Model):
    """The outbox: one row per email the engine decided to send (unique per step)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        SUPPRESSED = "suppressed", "Suppressed at send time"
        FAILED = "failed", "Failed"

    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE)
    campaign = models.ForeignKey(
        "campaigns.Campaign", null=True, on_delete=models.SET_NULL, related_name="messages"
    )
    step = models.ForeignKey("campaigns.Step", null=True, on_delete=models.SET_NULL)
    position = models.PositiveIntegerField(default=0)
    enrollment = models.ForeignKey(
        "campaigns.Enrollment", null=True, on_delete=models.SET_NULL, related_name="messages"
    )
    profile = models.ForeignKey(
        "tracking.Profile", null=True, on_delete=models.SET_NULL, related_name="messages"
    )
    template = models.ForeignKey(EmailTemplate, null=True, on_delete=models.SET_NULL)
    to_email = models.EmailField(max_length=254)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(default=tz_now)
    # A transient ESP error puts the message back with a later `not_before` (backoff).
    not_before = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    esp_message_id = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    # db_default: the engine inserts Messages with raw SQL that names its own columns.
    promo_code = models.CharField(max_length=100, blank=True, default="", db_default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment", "position"],
                condition=models.Q(enrollment__isnull=False),
                name="message_once_per_enrollment_step",
            )
        ]
        indexes = [
            # The claim's order (campaigns/email/outbox.py): read from the index, the
            # oldest `limit` rows cost the same with 100 or 100,000 queued.
            models.Index(
                fields=["created_at", "id"],
                name="message_queued_in_order",
                condition=models.Q(status="queued"),
            ),
            models.Index(
                fields=["claimed_at"], name="message_sending", condition=models.Q(status="sending")
            ),
            models.Index(fields=["profile", "sent_at"], name="message_profile_sent"),
            models.Index(
                fields=["esp_message_id"],
                name="message_esp_id",
                condition=~models.Q(esp_message_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"to {self.to_email} ({self.status})"


class Suppression(models.Model):
    """An address never to be mailed again on this site. Keyed by hash so erasure keeps it."""

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Hard bounce"
        COMPLAINED = "complained", "Spam complaint"
        MANUAL = "manual", "Added by hand"
        ERASED = "erased", "Person erased (GDPR)"

    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE)
    email_hash = models.CharField(max_length=64)
    email = models.EmailField(
        blank=True, default="", help_text="Cleared when the person is erased."
    )
    reason = models.CharField(max_length=14, choices=Reason.choices)
    note = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=tz_now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "email_hash"], name="suppression_unique")
        ]

    def __str__(self) -> str:
        return f"{self.email or self.email_hash[:12]} ({self.reason})"


class CampaignOptOut(models.Model):
    """A person left one campaign (preferences page) but still gets the site's others."""

    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE)
    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE)
    email_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=tz_now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "email_hash"], name="optout_unique")
        ]

    def __str__(self) -> str:
        return f"{self.email_hash[:12]} left {self.campaign_id}"


class EmailSettings(models.Model):
    """Per-site email behaviour: tracking, rate, attribution. Defaults apply when absent."""

    site = models.OneToOneField(
        "tracking.Site", on_delete=models.CASCADE, related_name="email_settings"
    )
    open_tracking = models.BooleanField(
        default=False, help_text="Add an open pixel (off by default: privacy)."
    )
    click_tracking = models.BooleanField(
        default=True, help_text="Route links through signed redirects and add UTM parameters."
    )
    utm_source = models.CharField(max_length=100, default="reengage")
    utm_medium = models.CharField(max_length=100, default="email")
    sends_per_minute = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(1)], help_text="Send rate limit for this site."
    )
    attribution_days = models.PositiveIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(90)],
        help_text="An order within this many days of a click is credited to the email.",
    )
    attribute_opens = models.BooleanField(
        default=False, help_text="Also credit orders that follow an open (not only a click)."
    )
    unsubscribe_mailto = models.EmailField(
        blank=True,
        default="",
        help_text="Address for mailto: List-Unsubscribe requests (default: the sender).",
    )

    class Meta:
        verbose_name = "email settings"
        verbose_name_plural = "email settings"

    def __str__(self) -> str:
        return f"Email settings of {self.site}"

    @classmethod
    def for_site(cls, site_id: int) -> EmailSettings:
        found = cls.objects.filter(site_id=site_id).first()
        return found or cls(site_id=site_id)


class EmailEvent(models.Model):
    """One ESP webhook event, stored once: the unique key makes redelivery harmless."""

    esp_name = models.CharField(max_length=40)
    # The ESP's event id, or a digest of the event's fields where the ESP gives none.
    event_key = models.CharField(max_length=200)
    event_type = models.CharField(max_length=20)
    message = models.ForeignKey(Message, null=True, on_delete=models.SET_NULL, related_name="+")
    recipient = models.CharField(max_length=254, blank=True, default="")
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=tz_now)
    detail = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["esp_name", "event_key"], name="emailevent_once")
        ]

    def __str__(self) -> str:
        return f"{self.esp_name} {self.event_type}"


class Attribution(models.Model):
    """An Order Completed credited to the email clicked (or opened) before it. Once per order."""

    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attributions")
    event_id = models.BigIntegerField(help_text="The Order Completed event (tracking_event.id).")
    ordered_at = models.DateTimeField()
    revenue = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    created_at = models.DateTimeField(default=tz_now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event_id"], name="attribution_once")]

    def __str__(self) -> str:
        return f"order {self.event_id} → message {self.message_id}"


class DevMail(models.Model):
    """What the development email backend received: the dev mailbox shown in the admin."""

    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    esp_message_id = models.CharField(max_length=64)
    from_email = models.CharField(max_length=400)
    to = models.CharField(max_length=1000)
    subject = models.CharField(max_length=1000)
    html = models.TextField(blank=True, default="")
    text = models.TextField(blank=True, default="")
    headers = models.JSONField(default=dict)
    metadata = models.JSONField(default=dict)
    tags = models.JSONField(default=list)
    received_at = models.DateTimeField(default=tz_now)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = "dev mailbox message"
        verbose_name_plural = "dev mailbox"
        indexes = [models.Index(fields=["message"], name="devmail_message")]

    def __str__(self) -> str:
        return self.subject
