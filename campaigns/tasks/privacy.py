"""Retention, as periodic tasks (see docs/operations.md, "Retention")."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from campaigns.people import privacy


@shared_task(ignore_result=True)
def anonymise_inactive_profiles() -> int:
    return privacy.anonymise_inactive_profiles(
        now=timezone.now(), inactive_days=settings.PROFILE_INACTIVE_DAYS
    )


@shared_task(ignore_result=True)
def prune_message_bodies() -> int:
    return privacy.prune_message_bodies(now=timezone.now(), days=settings.MESSAGE_BODY_DAYS)


@shared_task(ignore_result=True)
def blank_erasure_changes() -> int:
    return privacy.blank_erasure_changes(now=timezone.now(), days=settings.ERASURE_CHANGE_DAYS)
