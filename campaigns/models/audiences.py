"""Retargeting audiences: members with expiry, the change log every delivery reads,
the rules that fill an audience, and the destinations its changes go to.

Writes to AudienceMember and AudienceChange go through `campaigns.audiences.membership` only;
AudienceDay is folded from the change log by `campaigns.audiences.history`.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from django.contrib.postgres.indexes import BrinIndex
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.timezone import now as tz_now


class Audience(models.Model):
    class TagType(models.TextChoices):
        NONE = "", "No on-site tag"
        IMAGE = "image", "Image pixel (a URL the browser loads)"
        META_PIXEL = "meta_pixel", "Meta Pixel custom event (fbq trackCustom)"
        GTAG = "gtag", "Google tag event (gtag event)"

    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE, related_name="audiences")
    name = models.CharField(max_length=200)
    lifetime_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="30, 90, 180 or any number."
    )
    include_hashed_emails = models.BooleanField(
        default=False,
        help_text="Include SHA-256 hashes of email and phone, only for verified people whose "
        "consent allows advertising use and who did not send Global Privacy Control.",
    )
    remove_on_conversion = models.BooleanField(default=True)
    # On-site tag: fired by static/reengage/tags.js for members, once per browser session.
    tag_type = models.CharField(max_length=12, choices=TagType.choices, blank=True, default="")
    tag_url = models.URLField(
        max_length=2000, blank=True, default="", help_text="For an image pixel: the https URL."
    )
    tag_event = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="For a Meta Pixel or Google tag event: the event name, e.g. WinBack.",
    )
    created_at = models.DateTimeField(default=tz_now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.tag_type == self.TagType.IMAGE and not self.tag_url.startswith("https://"):
            raise ValidationError({"tag_url": "an image pixel needs an https:// URL"})
        if self.tag_type in (self.TagType.META_PIXEL, self.TagType.GTAG) and not self.tag_event:
            raise ValidationError({"tag_event": "name the event the tag sends"})

    def tag_config(self) -> dict | None:
        """What tags.js needs to fire this audience's tag, or None without a tag."""
        if self.tag_type == self.TagType.IMAGE and self.tag_url:
            return {"audience": self.id, "type": "image", "url": self.tag_url}
        if self.tag_type in (self.TagType.META_PIXEL, self.TagType.GTAG) and self.tag_event:
            return {"audience": self.id, "type": self.tag_type, "event": self.tag_event}
        return None


class AudienceRule(models.Model):
    """ "Did `event` in the last `within_days` days and did not do `unless_event` since then."

    Re-evaluated periodically (campaigns.audiences.rules); members that stop
    matching leave the audience if the rule added them.
    """

    audience = models.OneToOneField(Audience, on_delete=models.CASCADE, related_name="rule")
    event = models.CharField(max_length=200, default="Product Viewed")
    within_days = models.PositiveIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(365)]
    )
    unless_event = models.CharField(
        max_length=200, blank=True, default="Order Completed", help_text="Blank: no exclusion."
    )
    enabled = models.BooleanField(default=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        text = f"did {self.event} in the last {self.within_days} days"
        return text + (f" and no {self.unless_event}" if self.unless_event else "")


class AudienceMember(models.Model):
    class RemovalReason(models.TextChoices):
        EXPIRED = "expired", "Expired"
        CONVERTED = "converted", "Converted"
        ERASED = "erased", "Erased"
        CONSENT_WITHDRAWN = "consent_withdrawn", "Consent withdrawn"
        NO_LONGER_MATCHES = "no_longer_matches", "No longer matches the rule"
        MANUAL = "manual", "Removed by hand"

    # No index of its own: member_unique and member_current lead with the audience.
    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="members", db_index=False
    )
    profile = models.ForeignKey(
        "tracking.Profile", null=True, on_delete=models.SET_NULL, related_name="memberships"
    )
    # Lower-cased, whitespace-free email (Meta and Google agree on it).
    email_sha256 = models.CharField(max_length=64, blank=True, default="")
    # Phone in E.164 with "+" (Google Customer Match).
    phone_sha256 = models.CharField(max_length=64, blank=True, default="")
    # Phone as country code and number, digits only (Meta customer files).
    phone_digits_sha256 = models.CharField(max_length=64, blank=True, default="")
    # What (re)started this membership: "rule" members leave when the rule stops matching.
    added_by = models.CharField(max_length=40, blank=True, default="")
    added_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    removed_at = models.DateTimeField(null=True, blank=True)
    removal_reason = models.CharField(
        max_length=20, choices=RemovalReason.choices, blank=True, default=""
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "profile"], name="member_unique")
        ]
        indexes = [
            models.Index(
                fields=["expires_at"], name="member_expiry", condition=models.Q(removed_at=None)
            ),
            # Keyset pagination of current members (pull API, exports).
            models.Index(
                fields=["audience", "id"],
                name="member_current",
                condition=models.Q(removed_at=None),
            ),
        ]

    def __str__(self) -> str:
        return f"member {self.profile_id} of {self.audience_id}"


class AudienceChange(models.Model):
    """One add or remove, recorded once: the single source for exports, API and webhooks."""

    class Action(models.TextChoices):
        ADD = "add", "Added"
        REMOVE = "remove", "Removed"

    # An append-only log written only by campaigns.audiences.membership, in the same statement
    # as the member row it points at: foreign-key triggers would only re-check that
    # (two lookups per change, most of the cost of a large add), so the references are
    # not enforced in the database. Deletes still cascade (Django collects them).
    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="changes",
        db_index=False, db_constraint=False,
    )  # fmt: skip
    member = models.ForeignKey(
        AudienceMember, on_delete=models.CASCADE, related_name="changes", db_constraint=False
    )
    action = models.CharField(max_length=6, choices=Action.choices)
    reason = models.CharField(max_length=40, blank=True, default="")
    # Snapshot at the time of the change: what a destination needs to act on it.
    anonymous_ids = models.JSONField(default=list)
    email_sha256 = models.CharField(max_length=64, blank=True, default="")
    phone_sha256 = models.CharField(max_length=64, blank=True, default="")
    phone_digits_sha256 = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["audience", "id"], name="change_cursor"),
            # The member-count history (campaigns.audiences.history) reads days of changes.
            # BRIN: the log is appended in time order, and a btree here cost the
            # audience adds a quarter more time per change row.
            BrinIndex(fields=["created_at"], name="change_time_brin", autosummarize=True),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.member_id}"


class AudienceDay(models.Model):
    """One audience's adds and removals on one day (settings.TIME_ZONE): the rollup the
    member-count chart reads instead of the whole change log.

    Written only by campaigns.audiences.history, which recomputes whole days from
    AudienceChange (so folding a day twice is harmless); the member count at the end
    of a day is the running sum of added minus removed.
    """

    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="days", db_index=False
    )
    day = models.DateField()
    added = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    # The highest change id counted in this day: changes above every day's are new.
    last_change_id = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "day"], name="audienceday_unique")
        ]

    def __str__(self) -> str:
        return f"{self.audience_id} on {self.day}: +{self.added} −{self.removed}"


def new_signing_secret() -> str:
    """A Standard Webhooks secret: "whsec_" and base64 of 32 random bytes."""
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _encrypted_new_secret() -> str:
    from reengage.encryption import encrypt

    return encrypt(new_signing_secret())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


KEY_OVERLAP = timedelta(hours=24)


class Destination(models.Model):
    """Where one audience's changes go: a signed webhook, and/or a pull-API token.

    Both credentials rotate with an overlap (KEY_OVERLAP by default), like sites'
    secret keys: after a rotation the previous token still reads, and webhooks
    carry a signature under the previous secret too, until the overlap ends, so
    the receiver can be switched over without losing a call.
    """

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="destinations")
    name = models.CharField(max_length=200)
    url = models.URLField(
        max_length=2000,
        blank=True,
        default="",
        help_text="Webhook URL that receives batches of changes. Blank: pull API only.",
    )
    # The Standard Webhooks secret, encrypted at rest (reengage.encryption, under
    # FIELD_ENCRYPTION_KEY); `signing_secret` is the plaintext, for signing.
    signing_secret_encrypted = models.TextField(editable=False, default=_encrypted_new_secret)
    previous_signing_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    previous_signing_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # SHA-256 of the read-only pull-API token; the token itself is shown once.
    token_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    token_hint = models.CharField(max_length=12, blank=True, default="", editable=False)
    previous_token_hash = models.CharField(
        max_length=64, blank=True, default="", db_index=True, editable=False
    )
    previous_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    # The highest change id already put into a delivery (the batching cursor).
    last_change_id = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=tz_now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["token_hash"], condition=~models.Q(token_hash=""), name="destination_token"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def signing_secret(self) -> str:
        """The Standard Webhooks secret the receiver verifies signatures with."""
        from reengage.encryption import decrypt

        return decrypt(self.signing_secret_encrypted)

    @signing_secret.setter
    def signing_secret(self, value: str) -> None:
        from reengage.encryption import encrypt

        self.signing_secret_encrypted = encrypt(value)

    @property
    def signing_secret_hint(self) -> str:
        secret = self.signing_secret
        return f"{secret[:10]}…{secret[-4:]}"

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets to sign with at `now`: the current one, and the previous one
        during its overlap (a webhook then carries both signatures)."""
        from reengage.encryption import decrypt

        found = [self.signing_secret]
        expires = self.previous_signing_secret_expires_at
        if self.previous_signing_secret_encrypted and expires and expires > now:
            found.append(decrypt(self.previous_signing_secret_encrypted))
        return found

    def rotate_signing_secret(self, *, now: datetime, overlap: timedelta = KEY_OVERLAP) -> str:
        """A new signing secret, returned once; the current one signs too for `overlap`."""
        self.previous_signing_secret_encrypted = self.signing_secret_encrypted
        self.previous_signing_secret_expires_at = now + overlap
        secret = new_signing_secret()
        self.signing_secret = secret
        self.save(
            update_fields=["signing_secret_encrypted", "previous_signing_secret_encrypted",
                           "previous_signing_secret_expires_at"]
        )  # fmt: skip
        return secret

    def issue_token(self, *, now: datetime, overlap: timedelta = KEY_OVERLAP) -> str:
        """A new read-only token for the pull API, returned once; the current one keeps
        reading for `overlap` (zero ends it at once)."""
        token = "rt_" + secrets.token_urlsafe(32)
        self.previous_token_hash = self.token_hash if overlap > timedelta(0) else ""
        self.previous_token_expires_at = now + overlap if self.previous_token_hash else None
        self.token_hash = hash_token(token)
        self.token_hint = token[:7]
        self.save(
            update_fields=["token_hash", "token_hint", "previous_token_hash",
                           "previous_token_expires_at"]
        )  # fmt: skip
        return token

    def revoke_tokens(self) -> None:
        """End the current and the previous pull-API token at once (a leaked token)."""
        self.token_hash = self.token_hint = self.previous_token_hash = ""
        self.previous_token_expires_at = None
        self.save(
            update_fields=["token_hash", "token_hint", "previous_token_hash",
                           "previous_token_expires_at"]
        )  # fmt: skip

    @classmethod
    def for_token(cls, token: str, *, now: datetime) -> Destination | None:
        """The enabled destination this pull-API token belongs to (current, or previous
        within its overlap)."""
        digest = hash_token(token)
        return (
            cls.objects.filter(enabled=True)
            .filter(
                models.Q(token_hash=digest)
                | models.Q(previous_token_hash=digest, previous_token_expires_at__gt=now)
            )
            .select_related("audience")
            .first()
        )


def new_webhook_id() -> str:
    return "msg_" + uuid.uuid4().hex


class Delivery(models.Model):
    """One batch of changes for one webhook destination; the same webhook-id on every retry."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead (gave up)"

    destination = models.ForeignKey(
        Destination, on_delete=models.CASCADE, related_name="deliveries"
    )
    webhook_id = models.CharField(max_length=40, unique=True, default=new_webhook_id)
    change_ids = models.JSONField(default=list)
    first_change_id = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            # A change goes into one batch per destination, even if two batchers race.
            models.UniqueConstraint(
                fields=["destination", "first_change_id"], name="delivery_unique_batch"
            )
        ]
        indexes = [
            models.Index(
                fields=["destination", "id"],
                name="delivery_pending",
                condition=models.Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} ({self.status})"


# --- ad-platform destinations (campaigns.audiences.platforms) -------------------------

# Ids the marketer copies from the platforms: digits (Meta, Google Ads) or GA4's G-XXXX.
# Checked strictly because they become part of the request URL.
_DIGITS = RegexValidator(r"^[0-9]{1,30}$", "digits only, as the platform shows it")
_MEASUREMENT_ID = RegexValidator(r"^G-[A-Z0-9]{4,20}$", "a GA4 measurement id, e.g. G-ABC123XYZ")
# GA4: a letter, then letters, digits, underscores; at most 40 characters (Meta takes 50).
_EVENT_NAME = RegexValidator(
    r"^[A-Za-z][A-Za-z0-9_]{0,39}$", "a letter, then letters, digits or _ (at most 40)"
)


def platform_event_slug(name: str) -> str:
    """`Cart abandoners (EU)` → `cart_abandoners_eu`, short enough for GA4's 40
    characters after `reengage_leave_`."""
    import re

    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return (slug or "audience")[:25].rstrip("_")


class PlatformDestination(models.Model):
    """One audience's joins and leaves, delivered to one ad platform's own API.

    Credentials (an access token, an API secret or a Google service-account JSON)
    are encrypted at rest like Destination.signing_secret; without one, what would
    have been sent is recorded in the dev ad-platform inbox instead (PlatformInboxEntry).
    """

    class Kind(models.TextChoices):
        META_CAPI = "meta_capi", "Meta Conversions API (pixel events)"
        META_AUDIENCE = "meta_audience", "Meta Custom Audience (customer list)"
        GOOGLE_AUDIENCE = "google_audience", "Google Data Manager API (Customer Match list)"
        GA4 = "ga4", "GA4 Measurement Protocol (events)"

    class GoogleAccountType(models.TextChoices):
        GOOGLE_ADS = "GOOGLE_ADS", "Google Ads"
        DISPLAY_VIDEO_ADVERTISER = "DISPLAY_VIDEO_ADVERTISER", "Display & Video 360 advertiser"

    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="platform_destinations"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    # Meta
    pixel_id = models.CharField(
        max_length=30, blank=True, default="", validators=[_DIGITS],
        help_text="Meta Conversions API: the pixel (dataset) id from Events Manager.",
    )  # fmt: skip
    custom_audience_id = models.CharField(
        max_length=30, blank=True, default="", validators=[_DIGITS],
        help_text="Meta Custom Audience: the id of a customer-list custom audience.",
    )  # fmt: skip
    test_event_code = models.CharField(
        max_length=40, blank=True, default="",
        help_text="Meta Conversions API: a test event code from Events Manager (blank in "
        "production).",
    )  # fmt: skip
    # Google Data Manager API
    google_account_type = models.CharField(
        max_length=30, choices=GoogleAccountType.choices, blank=True, default="GOOGLE_ADS"
    )
    google_operating_account_id = models.CharField(
        max_length=30, blank=True, default="", validators=[_DIGITS],
        help_text="Google: the account that owns the audience, digits without dashes.",
    )  # fmt: skip
    google_login_account_id = models.CharField(
        max_length=30, blank=True, default="", validators=[_DIGITS],
        help_text="Google: the manager account the credentials act through (blank: none).",
    )  # fmt: skip
    google_audience_id = models.CharField(
        max_length=30, blank=True, default="", validators=[_DIGITS],
        help_text="Google: the Customer Match audience id (productDestinationId).",
    )  # fmt: skip
    google_terms_accepted = models.BooleanField(
        default=False,
        help_text="Google: the Customer Match terms of service are accepted in this account.",
    )
    # GA4
    measurement_id = models.CharField(
        max_length=30, blank=True, default="", validators=[_MEASUREMENT_ID],
        help_text="GA4: Admin → Data streams → your web stream → Measurement ID.",
    )  # fmt: skip
    # Event names (Meta Conversions API and GA4): blank → reengage_join_<audience>.
    join_event = models.CharField(max_length=40, blank=True, default="", validators=[_EVENT_NAME])
    leave_event = models.CharField(max_length=40, blank=True, default="", validators=[_EVENT_NAME])
    # The access token / API secret / service-account JSON, encrypted (reengage.encryption).
    credential_encrypted = models.TextField(blank=True, default="", editable=False)
    credential_hint = models.CharField(max_length=40, blank=True, default="", editable=False)
    # Delivery state: the highest change id put into a batch, and the last outcomes.
    last_change_id = models.BigIntegerField(default=0, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=1000, blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=tz_now, editable=False)

    class Meta:
        verbose_name = "ad-platform destination"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        slug = platform_event_slug(self.audience.name) if self.audience_id else "audience"
        self.join_event = self.join_event or f"reengage_join_{slug}"
        self.leave_event = self.leave_event or f"reengage_leave_{slug}"
        super().save(*args, **kwargs)

    REQUIRED = {
        Kind.META_CAPI: ["pixel_id"],
        Kind.META_AUDIENCE: ["custom_audience_id"],
        Kind.GOOGLE_AUDIENCE: ["google_operating_account_id", "google_audience_id"],
        Kind.GA4: ["measurement_id"],
    }

    def clean(self) -> None:
        errors = {
            field: "needed for this kind of destination"
            for field in self.REQUIRED.get(self.kind, [])
            if not getattr(self, field)
        }
        hashed_only = (self.Kind.META_AUDIENCE, self.Kind.GOOGLE_AUDIENCE)
        if (
            self.kind in hashed_only
            and self.audience_id
            and not self.audience.include_hashed_emails
        ):
            errors["kind"] = (
                "customer lists take hashed emails: this audience does not include them "
                "(tick “include hashed emails” on the audience first)"
            )
        if self.kind == self.Kind.META_CAPI and self.audience_id and not self.audience.site.domains:
            # Website events need event_source_url: the site's first domain.
            errors["kind"] = "the audience's site has no domain (Sites → domains)"
        if self.kind == self.Kind.GOOGLE_AUDIENCE and not self.google_terms_accepted:
            errors["google_terms_accepted"] = "Google requires the Customer Match terms"
        if errors:
            raise ValidationError(errors)

    @property
    def credential(self) -> str:
        from reengage.encryption import decrypt

        return decrypt(self.credential_encrypted) if self.credential_encrypted else ""

    @credential.setter
    def credential(self, value: str) -> None:
        from reengage.encryption import encrypt

        value = value.strip()
        self.credential_encrypted = encrypt(value) if value else ""
        self.credential_hint = f"{value[:4]}…{value[-4:]}" if len(value) > 12 else ""

    @property
    def uses_dev_inbox(self) -> bool:
        """Without credentials nothing leaves this server: the dev inbox records it."""
        return not self.credential_encrypted


class PlatformBatch(models.Model):
    """One request's worth of changes for one ad-platform destination (the outbox);
    the same event ids and session on every retry."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead (gave up)"

    destination = models.ForeignKey(
        PlatformDestination, on_delete=models.CASCADE, related_name="batches"
    )
    change_ids = models.JSONField(default=list)
    first_change_id = models.BigIntegerField()
    action = models.CharField(max_length=6, blank=True, default="")  # "" = mixed
    # Meta customer-list upload session: batches made in one pass share a session.
    session_id = models.BigIntegerField(default=0)
    batch_seq = models.PositiveIntegerField(default=1)
    last_batch_flag = models.BooleanField(default=True)
    estimated_num_total = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Requests of this batch already answered 2xx (GA4 sends one per browser).
    requests_done = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True, default="")
    sent = models.PositiveIntegerField(default=0)  # events / members the platform took
    skipped = models.PositiveIntegerField(default=0)  # no id this platform matches on
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "ad-platform batch"
        verbose_name_plural = "ad-platform batches"
        constraints = [
            # A change goes into one batch per destination, even if two batchers race.
            models.UniqueConstraint(
                fields=["destination", "first_change_id"], name="platformbatch_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=["destination", "id"],
                name="platformbatch_pending",
                condition=models.Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"batch {self.pk} of {self.destination_id} ({self.status})"


class PlatformMember(models.Model):
    """What one destination was sent when a member joined: the leave goes to the same
    ids (after an erasure the browser's ids are gone from tracking.AdIdentifiers),
    and the row is forgotten once the leave is delivered."""

    destination = models.ForeignKey(
        PlatformDestination, on_delete=models.CASCADE, related_name="members", db_index=False
    )
    member = models.ForeignKey(
        AudienceMember, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    change_id = models.BigIntegerField()  # the add change that made it
    fbp = models.CharField(max_length=100, blank=True, default="")
    fbc = models.CharField(max_length=500, blank=True, default="")
    ga_client_id = models.CharField(max_length=100, blank=True, default="")
    client_ip = models.CharField(max_length=45, blank=True, default="")
    user_agent = models.CharField(max_length=512, blank=True, default="")
    email_sha256 = models.CharField(max_length=64, blank=True, default="")
    phone_sha256 = models.CharField(max_length=64, blank=True, default="")
    phone_digits_sha256 = models.CharField(max_length=64, blank=True, default="")
    external_id_sha256 = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["destination", "member"], name="platformmember_unique")
        ]

    def __str__(self) -> str:
        return f"member {self.member_id} at {self.destination_id}"


class PlatformInboxEntry(models.Model):
    """The dev ad-platform inbox: one request a destination without credentials would
    have sent (endpoint, payload, hashed identifiers), shown in the admin."""

    destination = models.ForeignKey(
        PlatformDestination, on_delete=models.CASCADE, related_name="inbox"
    )
    batch = models.ForeignKey(PlatformBatch, null=True, on_delete=models.SET_NULL)
    method = models.CharField(max_length=6)
    endpoint = models.CharField(max_length=2000)
    payload = models.JSONField()
    items = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "dev ad-platform inbox entry"
        verbose_name_plural = "dev ad-platform inbox"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.method} {self.endpoint}"
