"""Duplicating a campaign: the admin's "Duplicate" action.

The copy is a draft with the same trigger, conditions, goal, limits and steps
(with their A/B variants and promo codes), and nothing of the original's
history: no enrollments, decisions or messages. A draft reaches nobody until a
marketer activates it, so a copy never doubles what visitors receive.
"""

from __future__ import annotations

from django.db import transaction

from campaigns.models import Campaign, Step, StepPromo, StepVariant

NAME_LENGTH = Campaign._meta.get_field("name").max_length


def copy_name(name: str) -> str:
    return f"Copy of {name}"[:NAME_LENGTH]


@transaction.atomic
def duplicate_campaign(original: Campaign) -> Campaign:
    copy = Campaign.objects.get(pk=original.pk)
    copy.pk = None
    copy.name = copy_name(original.name)
    copy.status = Campaign.Status.DRAFT
    copy.created_at = Campaign._meta.get_field("created_at").get_default()
    copy.save()
    steps = original.steps.prefetch_related("variants").select_related("promo")
    for step in steps:
        new_step = Step.objects.create(
            campaign=copy, position=step.position, delay_minutes=step.delay_minutes,
            delay_from=step.delay_from, channel=step.channel, template_id=step.template_id,
            audience_id=step.audience_id,
        )  # fmt: skip
        StepVariant.objects.bulk_create(
            StepVariant(step=new_step, template_id=v.template_id, share=v.share)
            for v in step.variants.all()
        )
        promo = getattr(step, "promo", None)
        if promo is not None:
            StepPromo.objects.create(step=new_step, fixed_code=promo.fixed_code, pool=promo.pool)
    return copy
