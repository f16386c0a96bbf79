"""Email templates, the Message outbox and the suppression list."""

from __future__ import annotations

import hashlib

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
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    esp_message_id = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment", "position"],
                condition=models.Q(enrollment__isnull=False),
                name="message_once_per_enrollment_step",
            )
        ]
        indexes = [
            models.Index(
                fields=["created_at"], name="message_queued", condition=models.Q(status="queued")
            ),
            models.Index(fields=["profile", "sent_at"], name="message_profile_sent"),
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
