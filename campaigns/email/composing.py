"""What one email is made of: the variant and promo code a person gets, the data a
render needs, and the AnymailMessage with its headers, checked for injection.

campaigns/email/sending.py decides *when* and *whether* a Message is sent; this module
only composes it (no status changes, except handing a pool code to a message).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime
from email.utils import formataddr, parseaddr
from urllib.parse import quote, urlsplit

from anymail.message import AnymailMessage
from django.conf import settings
from django.db import connection

from campaigns.email.rendering import EmailData, RenderedEmail
from campaigns.models import EmailSettings, Message, StepPromo, StepVariant

# --- variants and promo codes ---------------------------------------------------------


def choose_variant(variants: list[StepVariant], person_key: str, step_id: int):
    """The same person always gets the same variant of a step (hash of person and step)."""
    total = sum(v.share for v in variants)
    digest = hashlib.sha256(f"{step_id}:{person_key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % total
    for variant in variants:
        if bucket < variant.share:
            return variant.template
        bucket -= variant.share
    return variants[-1].template


ASSIGN_POOL_CODE = """
UPDATE campaigns_promocode SET message_id = %(message)s, handed_out_at = %(now)s
WHERE id = (
    SELECT id FROM campaigns_promocode WHERE pool_id = %(pool)s AND message_id IS NULL
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING code
"""


class PromoPoolEmpty(Exception):
    pass


def promo_code_for(message: Message, promo: StepPromo | None, now: datetime) -> str:
    if message.promo_code or promo is None:
        return message.promo_code
    if promo.fixed_code:
        return promo.fixed_code
    with connection.cursor() as cursor:
        # A retried message keeps the code it was handed (one code per message: unique key).
        cursor.execute("SELECT code FROM campaigns_promocode WHERE message_id = %s", [message.pk])
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                ASSIGN_POOL_CODE, {"message": message.pk, "now": now, "pool": promo.pool_id}
            )
            row = cursor.fetchone()
    if row is None:
        raise PromoPoolEmpty(f"promo code pool {promo.pool_id} has no codes left")
    return row[0]


# --- building the email ----------------------------------------------------------------

# CR/LF (and other control characters, and Unicode line breaks) in a header value
# would let data split headers: refused before anything is sent.
_HEADER_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


class HeaderRefused(ValueError):
    pass


def check_headers(values: dict[str, str]) -> None:
    for name, value in values.items():
        if _HEADER_UNSAFE.search(value or ""):
            raise HeaderRefused(
                f"header injection refused: {name} contains a line break or control character"
            )


def ascii_label(text: str) -> str:
    """`text` with accents dropped and other non-ASCII characters removed."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(folded.split())


def domain() -> str:
    return urlsplit(settings.PUBLIC_URL).hostname or "localhost"


def email_data(message: Message, email_settings: EmailSettings, template_id: int | None):
    site = message.site
    campaign = message.campaign
    return EmailData(
        message_id=message.pk,
        site_id=site.pk,
        site_name=site.name,
        postal_address=site.postal_address,
        to_email=message.to_email,
        traits=message.profile.traits if message.profile else {},
        trigger=message.enrollment.trigger_properties if message.enrollment else {},
        promo_code=message.promo_code,
        campaign_id=message.campaign_id,
        campaign_name=campaign.name if campaign else "",
        template_id=template_id,
        click_tracking=email_settings.click_tracking,
        open_tracking=email_settings.open_tracking,
        utm_source=email_settings.utm_source,
        utm_medium=email_settings.utm_medium,
        cart_path=site.cart_path,
        locale=site.locale,
    )


def build_email(
    message: Message,
    template,
    rendered: RenderedEmail,
    email_settings: EmailSettings,
    backend,
) -> AnymailMessage:
    site = message.site
    if template.from_email:
        from_email = formataddr((template.from_name, template.from_email))
    else:
        from_email = settings.DEFAULT_FROM_EMAIL
    mailto = email_settings.unsubscribe_mailto or parseaddr(from_email)[1]
    token = rendered.unsubscribe_url.rstrip("/").rsplit("/", 1)[-1]
    # ASCII: some ESPs' APIs send custom headers as raw 8-bit UTF-8, so Anymail
    # refuses a non-ASCII one for Brevo ("non-ASCII characters in 'List-Id' header"),
    # which would fail every email of a site named "Café"; the phrase is only a label.
    list_name = ascii_label(site.name).replace('"', "'")
    headers = {
        "List-Unsubscribe": (
            f"<{rendered.unsubscribe_url}>, "
            f"<mailto:{mailto}?subject={quote('unsubscribe ' + token)}>"
        ),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": f'"{list_name}" <site-{site.pk}.{domain()}>',
        # Deterministic: the key to search the ESP's logs for after an interruption.
        "Message-ID": f"<reengage.{message.pk}@{domain()}>",
        "X-Reengage-Message": str(message.pk),
    }
    check_headers(
        {
            **headers,
            "Subject": rendered.subject,
            "From": from_email,
            "To": message.to_email,
            "Reply-To": template.reply_to,
        }
    )
    ids = {"campaign": message.campaign_id, "step": message.step_id, "site": site.pk}
    tags = [f"{name}-{value}" for name, value in ids.items() if value][: settings.EMAIL_MAX_TAGS]
    esp_fields = {"tags": tags}
    if settings.EMAIL_SEND_METADATA:
        # Without metadata (an ESP that has none: Anymail would refuse the email),
        # webhooks find the Message by the ESP's message id (feedback.find_message).
        esp_fields["metadata"] = {
            "message_id": str(message.pk),
            **{k: str(v) for k, v in ids.items() if v},
        }
    email = AnymailMessage(
        subject=rendered.subject,
        body=rendered.text,
        from_email=from_email,
        to=[message.to_email],
        reply_to=[template.reply_to] if template.reply_to else None,
        headers=headers,
        **esp_fields,
        connection=backend,
    )
    email.attach_alternative(rendered.html, "text/html")
    return email
