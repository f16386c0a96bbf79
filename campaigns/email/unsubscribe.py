"""Unsubscribe, campaign opt-out and resubscribe: the person's own choices.

Links carry a signed token (django.core.signing, its own salt, an expiry of
UNSUBSCRIBE_LINK_MAX_AGE_DAYS) holding only the Message id: no address in the
URL, and a tampered or foreign token fails the signature check.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction

from campaigns.email.rendering import UNSUBSCRIBE_SALT
from campaigns.models import CampaignOptOut, Message, Suppression
from campaigns.models.email import email_hash


class BadToken(Exception):
    pass


def message_for_token(token: str) -> Message:
    try:
        message_id = signing.loads(
            token,
            salt=UNSUBSCRIBE_SALT,
            max_age=settings.UNSUBSCRIBE_LINK_MAX_AGE_DAYS * 86400,
        )
    except signing.SignatureExpired:
        raise BadToken("This link has expired.") from None
    except signing.BadSignature:
        raise BadToken("This link is not valid.") from None
    message = (
        Message.objects.select_related("site", "campaign").filter(pk=message_id).first()
        if isinstance(message_id, int)
        else None
    )
    if message is None:
        raise BadToken("This link is not valid any more.")
    return message


def is_suppressed(message: Message) -> bool:
    return Suppression.objects.filter(
        site_id=message.site_id, email_hash=email_hash(message.to_email)
    ).exists()


def suppress(site_id: int, address: str, reason: str, *, now: datetime, note: str = "") -> bool:
    """Add the address to the site's suppression list; False when it was there already."""
    try:
        with transaction.atomic():
            Suppression.objects.create(
                site_id=site_id,
                email_hash=email_hash(address),
                email=address.strip().lower(),
                reason=reason,
                note=note[:300],
                created_at=now,
            )
    except IntegrityError:
        return False  # suppression_unique: already suppressed (the first reason stays)
    return True


# Staff may lift only what staff or a bounce put there (a mailbox can come back).
# An unsubscribe or a spam complaint is the person's own word, which only they
# undo (resubscribe()); an erased person's suppression is what remains of their
# deletion request.
LIFTABLE_BY_HAND = (Suppression.Reason.MANUAL, Suppression.Reason.BOUNCED)


def lift_by_hand(suppression: Suppression) -> bool:
    """Let the address be mailed again, if staff may; False when it may not (or is gone)."""
    deleted, _ = Suppression.objects.filter(pk=suppression.pk, reason__in=LIFTABLE_BY_HAND).delete()
    return bool(deleted)


@transaction.atomic
def unsubscribe(message: Message, *, now: datetime, via: str) -> None:
    """Stop all marketing email of this site to the message's recipient."""
    suppress(message.site_id, message.to_email, Suppression.Reason.UNSUBSCRIBED, now=now,
             note=f"{via}, message {message.pk}")  # fmt: skip
    _mark_message(message, now)


@transaction.atomic
def leave_campaign(message: Message, *, now: datetime) -> None:
    if message.campaign_id is None:
        return
    CampaignOptOut.objects.get_or_create(
        campaign_id=message.campaign_id,
        email_hash=email_hash(message.to_email),
        defaults={"site_id": message.site_id, "created_at": now},
    )
    _mark_message(message, now)


@transaction.atomic
def resubscribe(message: Message) -> bool:
    """Undo the person's own unsubscribe. Bounces and complaints are not theirs to undo."""
    digest = email_hash(message.to_email)
    deleted, _ = Suppression.objects.filter(
        site_id=message.site_id, email_hash=digest, reason=Suppression.Reason.UNSUBSCRIBED
    ).delete()
    optouts, _ = CampaignOptOut.objects.filter(site_id=message.site_id, email_hash=digest).delete()
    return bool(deleted or optouts)


def _mark_message(message: Message, now: datetime) -> None:
    Message.objects.filter(
        pk=message.pk,
        status__in=[Message.Status.SENT, Message.Status.DELIVERED, Message.Status.OPENED,
                    Message.Status.CLICKED],
    ).update(status=Message.Status.UNSUBSCRIBED, last_event_at=now)  # fmt: skip
