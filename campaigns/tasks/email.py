"""Email tasks: thin wrappers that call campaigns.email.sending."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from campaigns.email import sending


@shared_task(ignore_result=True)
def send_queued_email() -> dict:
    """Periodic: drain the outbox within the run's time budget."""
    return sending.send_queued().counts


@shared_task(ignore_result=True)
def recover_interrupted_email() -> dict:
    """Periodic: settle messages stuck in `sending` by a killed worker."""
    return sending.recover_interrupted(now=timezone.now())
