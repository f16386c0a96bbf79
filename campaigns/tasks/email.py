"""Email tasks: thin wrappers that call campaigns.email.sending."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from campaigns.email import sending


@shared_task(ignore_result=True)
def send_queued_email() -> dict:
    """Send while there is work; when the run's budget ends with work left, queue the
    next run at once instead of waiting for beat (which starts one every interval too,
    so an idle outbox is still looked at, and a lost task costs one interval)."""
    report = sending.send_queued()
    if report.more_work:
        send_queued_email.delay()
    return report.counts


@shared_task(ignore_result=True)
def recover_interrupted_email() -> dict:
    """Periodic: settle messages stuck in `sending` by a killed worker."""
    return sending.recover_interrupted(now=timezone.now())
