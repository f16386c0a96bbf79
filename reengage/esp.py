"""What each Anymail ESP accepts, so the defaults follow the chosen EMAIL_BACKEND.

Every email carries tags (campaign-N, step-N, site-N) and metadata (our message id).
Some ESPs take only one tag or no metadata at all, and Anymail then refuses the
whole email (AnymailUnsupportedFeature: "Postmark does not support multiple
tags"), which fails every message of every campaign. The table follows
Anymail's ESP feature matrix (docs/esps/esp-feature-matrix.csv, "tags" and
"metadata" rows, Anymail 15) and each ESP's "Limitations and quirks" section;
settings.py takes its EMAIL_MAX_TAGS / EMAIL_SEND_METADATA defaults from it,
and reengage/checks.py warns at start-up when explicit settings do not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tags reengage puts on an email: campaign, step, site.
TAGS_WE_SEND = 3


@dataclass(frozen=True)
class EspLimits:
    name: str
    max_tags: int | None = None  # None: no limit Anymail knows of
    metadata: bool = True
    needs_package: str | None = None  # the Python package the backend imports
    extra: str | None = None  # reengage's pip extra that installs it
    unsupported_because: str = ""  # why Anymail no longer supports it officially


# Keyed by the backend module under anymail.backends.
ANYMAIL_ESPS: dict[str, EspLimits] = {
    "amazon_ses": EspLimits("Amazon SES", needs_package="boto3", extra="ses"),
    "brevo": EspLimits("Brevo"),
    "mailersend": EspLimits("MailerSend", metadata=False),
    "mailgun": EspLimits("Mailgun"),
    "mailjet": EspLimits("Mailjet", max_tags=1),
    "mailtrap": EspLimits("Mailtrap", max_tags=1),
    "mandrill": EspLimits("Mandrill"),
    "postal": EspLimits("Postal", max_tags=1, metadata=False),
    "postmark": EspLimits("Postmark", max_tags=1),
    "resend": EspLimits("Resend"),
    "scaleway": EspLimits("Scaleway"),
    # Both still send, but Anymail's backends warn on every use.
    "sendgrid": EspLimits(
        "SendGrid",
        unsupported_because="Anymail dropped official support for SendGrid (Anymail issue "
        "432): it is no longer tested; prefer a supported ESP",
    ),
    "sendinblue": EspLimits(
        "SendinBlue",
        unsupported_because="SendinBlue is now Brevo: use anymail.backends.brevo.EmailBackend "
        "and the webhook URL /anymail/brevo/tracking/",
    ),
    "sparkpost": EspLimits("SparkPost", max_tags=1),
    "unisender_go": EspLimits("Unisender Go"),
}

# A backend that is not an Anymail ESP (SMTP, the dev mailbox, the console, a
# custom one) takes whatever it is given.
ANY = EspLimits("")


def esp_key(email_backend: str) -> str | None:
    """`anymail.backends.postmark.EmailBackend` → "postmark"; None for other backends."""
    module, _, _ = email_backend.rpartition(".")
    prefix = "anymail.backends."
    if module.startswith(prefix) and module.removeprefix(prefix) in ANYMAIL_ESPS:
        return module.removeprefix(prefix)
    return None


def limits_for(email_backend: str, anymail: dict) -> EspLimits:
    key = esp_key(email_backend)
    if key is None:
        return ANY
    limits = ANYMAIL_ESPS[key]
    if key == "amazon_ses" and anymail.get("AMAZON_SES_MESSAGE_TAG_NAME"):
        # With a message tag name, Anymail also sends the tag as an SES Message Tag,
        # and SES takes only one there (Anymail: "multiple tags with the
        # AMAZON_SES_MESSAGE_TAG_NAME setting").
        return EspLimits(**{**limits.__dict__, "max_tags": 1})
    return limits


def default_max_tags(limits: EspLimits) -> int:
    return TAGS_WE_SEND if limits.max_tags is None else min(TAGS_WE_SEND, limits.max_tags)
