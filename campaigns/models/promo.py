"""What a step's email offers: A/B template variants and promo codes.

Kept beside the engine's Step (one row per step, or several variants) so the
engine's models stay the engine's.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.timezone import now as tz_now


class StepVariant(models.Model):
    """One of two or more templates a step splits its sends between (A/B test)."""

    step = models.ForeignKey("campaigns.Step", on_delete=models.CASCADE, related_name="variants")
    template = models.ForeignKey("campaigns.EmailTemplate", on_delete=models.PROTECT)
    share = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1)], help_text="Relative weight, e.g. 50 / 50."
    )

    class Meta:
        ordering = ["step", "id"]
        constraints = [
            models.UniqueConstraint(fields=["step", "template"], name="variant_unique_template")
        ]

    def __str__(self) -> str:
        return f"{self.template} ({self.share})"


class PromoPool(models.Model):
    """Unique codes imported from a CSV; each is handed to at most one message."""

    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=tz_now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PromoCode(models.Model):
    pool = models.ForeignKey(PromoPool, on_delete=models.CASCADE, related_name="codes")
    code = models.CharField(max_length=100)
    # One column per code: a code can point at one message only, and the unique
    # key stops one message from taking two codes when a send is retried.
    message = models.OneToOneField(
        "campaigns.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    handed_out_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "code"], name="promo_code_unique")]
        indexes = [
            # The next free code of a pool, lowest id first (composing.ASSIGN_POOL_CODE),
            # read from the index: the same cost with 10 or 100,000 codes left or used.
            models.Index(
                fields=["pool", "id"], name="promo_free_in_order", condition=models.Q(message=None)
            )
        ]

    def __str__(self) -> str:
        return self.code


class StepPromo(models.Model):
    """The promo code a step's email carries: a fixed code, or one from a pool."""

    step = models.OneToOneField("campaigns.Step", on_delete=models.CASCADE, related_name="promo")
    fixed_code = models.CharField(max_length=100, blank=True, default="")
    pool = models.ForeignKey(PromoPool, null=True, blank=True, on_delete=models.PROTECT)

    class Meta:
        verbose_name = "step promo code"

    def __str__(self) -> str:
        return self.fixed_code or str(self.pool)

    def clean(self) -> None:
        if bool(self.fixed_code) == bool(self.pool_id):
            raise ValidationError("Give either a fixed code or a pool, not both and not neither.")
