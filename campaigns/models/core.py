"""Campaigns, their steps, enrollments and the decisions made for them."""

from __future__ import annotations

from datetime import time

from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.timezone import now as tz_now


class SitePolicy(models.Model):
    """Site-wide sending rules: frequency cap and quiet hours (one per site)."""

    class CapAction(models.TextChoices):
        RESCHEDULE = "reschedule", "Reschedule to when the cap allows"
        SKIP = "skip", "Skip the email (retarget instead where the step allows)"

    site = models.OneToOneField("tracking.Site", on_delete=models.CASCADE, related_name="policy")
    email_cap_count = models.PositiveIntegerField(
        default=3, help_text="At most this many emails per person…"
    )
    email_cap_days = models.PositiveIntegerField(
        default=7, validators=[MinValueValidator(1)], help_text="…in this many days, all campaigns."
    )
    over_cap_action = models.CharField(
        max_length=12, choices=CapAction.choices, default=CapAction.RESCHEDULE
    )
    quiet_hours_enabled = models.BooleanField(default=True)
    quiet_hours_start = models.TimeField(default=time(21, 0))
    quiet_hours_end = models.TimeField(default=time(8, 0))
    quiet_hours_action = models.CharField(
        max_length=12, choices=CapAction.choices, default=CapAction.RESCHEDULE
    )

    class Meta:
        verbose_name = "sending policy"
        verbose_name_plural = "sending policies"

    def __str__(self) -> str:
        return f"Sending policy of {self.site}"


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ENDED = "ended", "Ended"

    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    priority = models.IntegerField(
        default=100, help_text="Lower runs first when campaigns compete."
    )
    trigger_event = models.CharField(max_length=200, default="Product Added")
    # [{"property": "value", "op": ">=", "value": 50}, {"property": "url", "op": "contains", ...}]
    trigger_conditions = models.JSONField(default=list, blank=True)
    goal_event = models.CharField(max_length=200, default="Order Completed")
    inactivity_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Restart the first step's timer while the visitor keeps acting.",
    )
    reentry_cooldown_hours = models.PositiveIntegerField(default=24 * 7)
    # {"email": "verified"|"any"|"none", "visitor": "new"|"returning"|"any",
    #  "traits": [{"trait": "plan", "op": "=", "value": "pro"}], "stage": ...}
    audience_conditions = models.JSONField(default=dict, blank=True)
    holdout_percent = models.PositiveIntegerField(
        default=10, validators=[MaxValueValidator(50)], help_text="Control group share, 0–50 %."
    )
    email_cap_count = models.PositiveIntegerField(null=True, blank=True)
    email_cap_days = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=tz_now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(holdout_percent__lte=50), name="campaign_holdout_at_most_half"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Step(models.Model):
    class Channel(models.TextChoices):
        EMAIL_ELSE_RETARGET = "email_else_retarget", "Email, else retarget"
        EMAIL_ONLY = "email_only", "Email only"
        RETARGET_ONLY = "retarget_only", "Retarget only"

    class DelayFrom(models.TextChoices):
        TRIGGER = "trigger", "after the trigger"
        PREVIOUS = "previous", "after the previous step"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField(default=0)
    delay_minutes = models.PositiveIntegerField(default=60)
    delay_from = models.CharField(
        max_length=10, choices=DelayFrom.choices, default=DelayFrom.TRIGGER
    )
    channel = models.CharField(
        max_length=24, choices=Channel.choices, default=Channel.EMAIL_ELSE_RETARGET
    )
    template = models.ForeignKey(
        "campaigns.EmailTemplate", null=True, blank=True, on_delete=models.PROTECT
    )
    audience = models.ForeignKey(
        "campaigns.Audience", null=True, blank=True, on_delete=models.PROTECT
    )

    class Meta:
        ordering = ["campaign", "position"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "position"], name="step_unique_position")
        ]

    def __str__(self) -> str:
        return f"{self.campaign} · step {self.position + 1}"


class Enrollment(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed all steps"
        EXITED = "exited", "Exited"
        CONTROL = "control", "Holdout (control group)"

    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE, db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="enrollments")
    profile = models.ForeignKey(
        "tracking.Profile",
        on_delete=models.CASCADE,
        related_name="enrollments",
        db_index=False,  # enrollment_profile (profile, campaign) serves it
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    is_holdout = models.BooleanField(default=False)
    next_position = models.PositiveIntegerField(default=0)
    due_at = models.DateTimeField(null=True, blank=True)
    enrolled_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    trigger_event_id = models.BigIntegerField(null=True, blank=True)
    # What the email needs: products, value, currency, url of the trigger event.
    trigger_properties = models.JSONField(default=dict, blank=True)
    exit_reason = models.CharField(max_length=40, blank=True, default="")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "profile"],
                condition=models.Q(status="active"),
                name="enrollment_one_active_per_campaign",
            )
        ]
        indexes = [
            models.Index(
                fields=["due_at"], name="enrollment_due", condition=models.Q(status="active")
            ),
            models.Index(fields=["profile", "campaign"], name="enrollment_profile"),
        ]

    def __str__(self) -> str:
        return f"{self.profile} in {self.campaign}"


class Decision(models.Model):
    """What the engine decided for one enrollment step, and why (once: unique)."""

    class Outcome(models.TextChoices):
        EMAIL = "email", "Emailed"
        RETARGET = "retarget", "Retargeted"
        NOTHING = "nothing", "Nothing"
        EXIT = "exit", "Exited"
        CONTROL = "control", "Holdout"
        RESCHEDULED = "rescheduled", "Rescheduled"

    # Every reason the engine writes, in the marketer's words (docs/campaigns.md).
    REASONS = {
        "emailed": "Email queued",
        "retargeted": "Added to the step's audience",
        "holdout": "In the holdout group: gets nothing, measures lift",
        "converted": "Reached the campaign's goal",
        "campaign_ended": "The campaign ended",
        "step_removed": "The step was deleted after enrollment",
        "merged": "Same person enrolled twice (profiles merged); the other enrollment goes on",
        "no_verified_email": "No verified email address",
        "no_email_consent": "Withdrew consent to marketing email",
        "suppressed": "Address is on the suppression list",
        "opted_out": "Left this campaign's emails (preferences page)",
        "frequency_cap": "Email frequency cap reached",
        "quiet_hours": "Quiet hours in the visitor's time zone",
        "no_template": "The step has no email template",
        "gpc": "Global Privacy Control: no advertising audiences",
        "no_ad_consent": "Withdrew consent to advertising",
        "no_audience": "The step has no audience to retarget with",
    }

    # The decision log is written only by the engine, in the transaction that holds
    # the enrollment's row lock; the enrollment key is enforced by the database and
    # the other keys are copies of the enrollment's (denormalised for reports and the
    # timeline). Their checks would run at commit for every row of every batch (and
    # share-lock the campaign and profile rows), the largest cost of a batch, so they
    # are not database constraints; Django still cascades deletes.
    site = models.ForeignKey(
        "tracking.Site", on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.CASCADE,
        related_name="decisions",
        db_constraint=False,
        db_index=False,  # decision_campaign (campaign, outcome) serves it
    )
    step = models.ForeignKey(Step, null=True, on_delete=models.SET_NULL, db_constraint=False)
    position = models.PositiveIntegerField()
    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="decisions")
    profile = models.ForeignKey("tracking.Profile", on_delete=models.CASCADE, db_constraint=False)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    reason = models.CharField(max_length=40)
    decided_at = models.DateTimeField()
    # For a reschedule: when the step is due again.
    rescheduled_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["decided_at", "id"]
        constraints = [
            # Rescheduled decisions may repeat; final ones are once per step.
            models.UniqueConstraint(
                fields=["enrollment", "position"],
                condition=~models.Q(outcome="rescheduled"),
                name="decision_once_per_step",
            )
        ]
        indexes = [models.Index(fields=["campaign", "outcome"], name="decision_campaign")]

    def __str__(self) -> str:
        return f"{self.outcome} ({self.reason})"


class ReportSnapshot(models.Model):
    """A large campaign's report as computed by the periodic task (campaigns.reports.snapshots):
    its page reads this instead of aggregating hundreds of thousands of rows per view."""

    campaign = models.OneToOneField(
        Campaign, on_delete=models.CASCADE, primary_key=True, related_name="report_snapshot"
    )
    computed_at = models.DateTimeField()
    seconds = models.FloatField(help_text="How long computing it took.")
    data = models.JSONField(encoder=DjangoJSONEncoder)

    def __str__(self) -> str:
        return f"report of {self.campaign_id} at {self.computed_at}"


class EmailCapLock(models.Model):
    """One row per person the engine considered emailing.

    A batch locks the rows of the people it may email (in id order, so batches
    never wait on each other in a circle) before it counts their recent emails:
    two workers deciding for the same person at once take turns, and the second
    sees the first one's email, so the frequency caps hold across workers.
    """

    profile_id = models.BigIntegerField(primary_key=True)

    def __str__(self) -> str:
        return f"email cap lock of profile {self.profile_id}"
