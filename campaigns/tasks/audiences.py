"""Periodic audience work (scheduled in settings.CELERY_BEAT_SCHEDULE): thin tasks."""

from __future__ import annotations

from datetime import UTC, datetime

from celery import shared_task
from django.conf import settings
from django.db import transaction

from campaigns.audiences import delivery, history, membership, rules
from campaigns.audiences.platforms import outbox


def _now() -> datetime:
    return datetime.now(UTC)


@shared_task(ignore_result=True)
def expire_audience_members() -> int:
    with transaction.atomic():
        return membership.expire_members(now=_now())


@shared_task(ignore_result=True)
def evaluate_audience_rules() -> None:
    """Fan out: one task per rule, so one large audience does not hold up the others."""
    for rule_id in rules.rules_to_evaluate():
        evaluate_audience_rule.delay(rule_id)


@shared_task(ignore_result=True)
def evaluate_audience_rule(rule_id: int) -> dict:
    result = rules.evaluate_rule(rule_id, now=_now())
    return {"added": result.added, "removed": result.removed}


@shared_task(ignore_result=True)
def deliver_audience_changes() -> int:
    """Batch new changes, claim due deliveries and send each in its own task."""
    now = _now()
    delivery.batch_changes(now=now)
    claimed = delivery.claim_due(now=now)
    for delivery_id in claimed:
        send_audience_delivery.delay(delivery_id)
    return len(claimed)


@shared_task(ignore_result=True)
def send_audience_delivery(delivery_id: int) -> str:
    return delivery.send_delivery(delivery_id, now=_now())


@shared_task(ignore_result=True)
def fold_audience_days() -> int:
    """Roll closed days of the change log into the member-count history."""
    return history.fold_days(now=_now())


@shared_task(ignore_result=True)
def deliver_platform_changes() -> int:
    """Batch new changes for the ad platforms, claim due batches, send each in its own
    task (a slow or failing platform holds back only its own destination)."""
    now = _now()
    outbox.batch_changes(now=now)
    claimed = outbox.claim_due(now=now)
    for batch_id in claimed:
        send_platform_batch.delay(batch_id)
    return len(claimed)


@shared_task(ignore_result=True)
def send_platform_batch(batch_id: int) -> int:
    """This batch, then its destination's next ones back to back for up to
    AD_PLATFORM_SEND_BUDGET_SECONDS."""
    return outbox.send_in_turn(
        batch_id, clock=_now, budget_seconds=settings.AD_PLATFORM_SEND_BUDGET_SECONDS
    )
