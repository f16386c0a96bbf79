"""The development email backend: keeps every email in the database for the admin.

`EMAIL_BACKEND=campaigns.email.devmail.EmailBackend` (the default) stores what would
have gone to an ESP as a `DevMail` row, rendered, so `make run` needs no ESP and
the admin's "Dev mailbox" shows exactly what a person would receive.

It also stands in for an ESP at the provider's boundary in tests: each accepted
email is one committed row, so counting rows counts what "the ESP" received. It
implements the optional `find_sent()` hook that lets the sender reconcile a
message interrupted mid-send (see campaigns/email/sending.py).
"""

from __future__ import annotations

import uuid

from django.core.mail.backends.base import BaseEmailBackend


class EmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages) -> int:
        from anymail.message import AnymailRecipientStatus, AnymailStatus

        from campaigns.models import DevMail

        sent = 0
        for email in email_messages:
            html = next(
                (content for content, mimetype in getattr(email, "alternatives", [])
                 if mimetype == "text/html"),
                "",
            )  # fmt: skip
            if getattr(email, "content_subtype", "plain") == "html":
                html, text = email.body, ""
            else:
                text = email.body
            metadata = dict(getattr(email, "metadata", None) or {})
            raw_id = metadata.get("message_id")
            esp_id = f"dev-{uuid.uuid4()}"
            DevMail.objects.create(
                message_id=int(raw_id) if str(raw_id or "").isdigit() else None,
                esp_message_id=esp_id,
                from_email=str(email.from_email),
                to=", ".join(email.to),
                subject=str(email.subject),
                html=html,
                text=text,
                headers={str(k): str(v) for k, v in (email.extra_headers or {}).items()},
                metadata=metadata,
                tags=list(getattr(email, "tags", None) or []),
            )
            status = AnymailStatus()
            status.set_recipient_status(
                {to: AnymailRecipientStatus(message_id=esp_id, status="sent") for to in email.to}
            )
            email.anymail_status = status
            sent += 1
        return sent

    def find_sent(self, message_ids: list[int]) -> dict[int, str]:
        """Which of these Messages did this backend accept? {message id: ESP id}."""
        from campaigns.models import DevMail

        found = DevMail.objects.filter(message_id__in=message_ids).values_list(
            "message_id", "esp_message_id"
        )
        return dict(found)
