"""Retargeting audiences: members with expiry, and the change log every delivery reads."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.utils.timezone import now as tz_now


class Audience(models.Model):
    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE, related_name="audiences")
    name = models.CharField(max_length=200)
    lifetime_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="30, 90, 180 or any number."
    )
    include_hashed_emails = models.BooleanField(
        default=False, help_text="Only for people whose consent allows advertising use."
    )
    remove_on_conversion = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=tz_now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AudienceMember(models.Model):
    class RemovalReason(models.TextChoices):
        EXPIRED = "expired", "Expired"
        CONVERTED = "converted", "Converted"
        ERASED = "erased", "Erased"
        CONSENT_WITHDRAWN = "consent_withdrawn", "Consent withdrawn"
        MANUAL = "manual", "Removed by hand"

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="members")
    profile = models.ForeignKey(
        "tracking.Profile", null=True, on_delete=models.SET_NULL, related_name="memberships"
    )
    email_sha256 = models.CharField(max_length=64, blank=True, default="")
    phone_sha256 = models.CharField(max_length=64, blank=True, default="")
    added_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    removed_at = models.DateTimeField(null=True, blank=True)
    removal_reason = models.CharField(
        max_length=20, choices=RemovalReason.choices, blank=True, default=""
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "profile"], name="member_unique")
        ]
        indexes = [
            models.Index(
                fields=["expires_at"], name="member_expiry", condition=models.Q(removed_at=None)
            )
        ]

    def __str__(self) -> str:
        return f"member {self.profile_id} of {self.audience_id}"


class AudienceChange(models.Model):
    """One add or remove, recorded once: the single source for exports, API and webhooks."""

    class Action(models.TextChoices):
        ADD = "add", "Added"
        REMOVE = "remove", "Removed"

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="changes")
    member = models.ForeignKey(AudienceMember, on_delete=models.CASCADE, related_name="changes")
    action = models.CharField(max_length=6, choices=Action.choices)
    reason = models.CharField(max_length=40, blank=True, default="")
    # Snapshot at the time of the change: what a destination needs to act on it.
    anonymous_ids = models.JSONField(default=list)
    email_sha256 = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["audience", "id"], name="change_cursor")]

    def __str__(self) -> str:
        return f"{self.action} {self.member_id}"
