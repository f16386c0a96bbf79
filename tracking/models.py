"""Sites, visitors, profiles and events.

A *Visitor* is one browser (one anonymous ID in a first-party cookie). A
*Profile* is one person: every visitor points at one, and `identify`/`alias`
stitch several visitors (and a userId) to the same profile, so a conversion on
any of a person's browsers counts.

Events live in a table partitioned by month of their timestamp (created by
migration 0002 in SQL, since Django cannot declare partitions); `Event` maps it
read-only for the admin and reports. Writes go through `tracking.storage`.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Upper
from django.utils.timezone import now as tz_now

from reengage import encryption


def new_write_key() -> str:
    return "wk_" + secrets.token_urlsafe(18)


def new_secret_key() -> str:
    return "sk_" + secrets.token_urlsafe(32)


def validate_domain(value: str) -> None:
    host = value.removeprefix("*.")
    if not host or "/" in host or (":" in host.strip("[]") and not host.startswith("[")):
        raise ValidationError(
            f"{value!r} is not a host name; write it like shop.example.com or *.example.com "
            "(no scheme, path or port)"
        )


def validate_timezone(value: str) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not a time zone name like Europe/Berlin") from None


def validate_locale(value: str) -> None:
    from django.core.exceptions import ValidationError

    from reengage.money import valid_locale

    if value and not valid_locale(value):
        raise ValidationError(f"{value!r} is not a locale we know, e.g. en, en_GB, de_DE, fr_FR")


class Site(models.Model):
    class ConsentMode(models.TextChoices):
        NONE = "none", "No consent needed (track everyone, honour GPC)"
        OPT_IN = "opt-in", "Opt-in: track only after the visitor consents"
        OPT_OUT = "opt-out", "Opt-out: track until the visitor declines"

    name = models.CharField(max_length=200)
    domains = ArrayField(
        models.CharField(max_length=253, validators=[validate_domain]),
        default=list,
        blank=True,
        help_text="Host names the browser snippet may send from, e.g. shop.example.com or "
        "*.example.com. Server-side calls with the secret key skip this check.",
    )
    write_key = models.CharField(max_length=64, unique=True, default=new_write_key, editable=False)
    # The secret key is the HMAC key for `user_hash`, so it is encrypted, not
    # hashed (reengage/encryption.py); the digest finds the site behind a key
    # without decrypting every row. Read and set it through `secret_key`.
    secret_key_digest = models.CharField(max_length=64, unique=True, editable=False)
    secret_key_encrypted = models.TextField(editable=False)
    # Rotation: the previous secret keeps working until this time.
    previous_secret_key_digest = models.CharField(
        max_length=64, blank=True, default="", db_index=True, editable=False
    )
    previous_secret_key_encrypted = models.TextField(blank=True, default="", editable=False)
    previous_secret_key_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    consent_mode = models.CharField(
        max_length=10, choices=ConsentMode.choices, default=ConsentMode.NONE
    )
    anonymize_ip = models.BooleanField(
        default=True, help_text="Zero the last octet (IPv4) or last 80 bits (IPv6) before storing."
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    retention_days = models.PositiveIntegerField(
        default=395,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Events older than this are deleted.",
    )
    cookie_days = models.PositiveIntegerField(
        default=395,
        validators=[MinValueValidator(1), MaxValueValidator(825)],
        help_text="Lifetime of the visitor's first-party cookie.",
    )
    postal_address = models.TextField(
        blank=True, default="", help_text="Shown in every email's footer (required by law)."
    )
    events_per_minute = models.PositiveIntegerField(
        default=60_000, help_text="Rate limit for this site's ingest, in events per minute."
    )
    # The write key is public: an Order Completed sent from a browser states any revenue
    # it likes. Off (the default), only secret-key orders carry revenue into reports;
    # browser orders still count as conversions (docs/security.md, "Trust model").
    require_identity_proof = models.BooleanField(
        "Require the identity proof for every userId",
        default=False,
        db_default=False,
        help_text="Turn on once your pages send user_hash with every identify: a browser call "
        "without it then never gives its browser a userId, not even a new one. Off: a browser "
        "may claim a userId nobody has used yet (a first sign-in of an older install).",
    )
    browser_order_revenue = models.BooleanField(
        "Credit revenue from browser orders",
        default=False,
        db_default=False,
        help_text="Count the revenue of Order Completed events sent from the browser (the "
        "public write key). Off: only orders your server sends with the secret key carry "
        "revenue; browser orders still count as conversions.",
    )
    locale = models.CharField(
        max_length=20,
        default="en",
        blank=True,
        validators=[validate_locale],
        help_text="How emails write money and numbers for this shop's customers, e.g. en, "
        "en_GB, de_DE, fr_FR (€39.00, 39,00 €). Blank: en.",
    )
    cart_path = models.CharField(
        max_length=200,
        default="/cart/",
        blank=True,
        validators=[
            RegexValidator(r"^/[^\s]*$", "A path on the site, starting with /, e.g. /cart/.")
        ],
        help_text="The shop's cart page: emails' {{ cart_url }} when the event carries no "
        "cart_url property (blank: the event's own url).",
    )
    created_at = models.DateTimeField(default=tz_now, editable=False)
    last_event_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if not self.secret_key_encrypted:
            self.secret_key = new_secret_key()
        super().save(*args, **kwargs)

    @property
    def secret_key(self) -> str:
        """The plaintext secret key (decrypted; show it only to whoever created it)."""
        return encryption.decrypt(self.secret_key_encrypted)

    @secret_key.setter
    def secret_key(self, value: str) -> None:
        self.secret_key_digest = encryption.digest(value)
        self.secret_key_encrypted = encryption.encrypt(value)

    @property
    def previous_secret_key(self) -> str:
        token = self.previous_secret_key_encrypted
        return encryption.decrypt(token) if token else ""

    def secret_keys(self, now=None) -> list[str]:
        now = now or tz_now()
        keys = [self.secret_key]
        expires = self.previous_secret_key_expires_at
        if self.previous_secret_key_encrypted and expires and expires > now:
            keys.append(self.previous_secret_key)
        return keys

    def rotate_secret_key(self, overlap: timedelta = timedelta(hours=24), now=None) -> str:
        """A new secret key, returned once; the current one keeps working for `overlap`."""
        now = now or tz_now()
        self.previous_secret_key_digest = self.secret_key_digest
        self.previous_secret_key_encrypted = self.secret_key_encrypted
        self.previous_secret_key_expires_at = now + overlap
        new = new_secret_key()
        self.secret_key = new
        self.save(
            update_fields=[
                "secret_key_digest", "secret_key_encrypted", "previous_secret_key_digest",
                "previous_secret_key_encrypted", "previous_secret_key_expires_at",
            ]
        )  # fmt: skip
        return new

    def user_hash(self, email: str) -> str:
        """The old, email-only proof: verifies an email, never an identity (tracking.trust)."""
        from tracking.trust import email_hash

        return email_hash(self.secret_key, email)

    def identity_proof(self, user_id: str, email: str = "") -> str:
        """The `user_hash` a site's backend computes for a browser call naming `user_id`
        (and `email`): HMAC-SHA256 of userId + newline + lower-cased email (tracking.trust)."""
        from tracking.trust import identity_proof

        return identity_proof(self.secret_key, user_id, email)


class Profile(models.Model):
    """One person on one site: traits, consent, and the identities that point here."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="profiles")
    user_id = models.CharField(max_length=200, null=True, blank=True)
    # False when only a browser's unproven claim gave this profile its user_id: the first
    # proven or secret-key call for the userId confirms or ends that claim (tracking.trust).
    user_id_proven = models.BooleanField(default=False, db_default=False)
    email = models.EmailField(max_length=254, null=True, blank=True)
    email_verified = models.BooleanField(
        default=False,
        help_text="Set only by a secret-key call or an identify with a valid user_hash. "
        "Unverified addresses are never mailed.",
    )
    traits = models.JSONField(default=dict, blank=True)
    # Per purpose: {"analytics": bool, "email": bool, "advertising": bool}; absent = unknown.
    consent = models.JSONField(default=dict, blank=True)
    gpc = models.BooleanField(default=False, help_text="The browser sent Global Privacy Control.")
    timezone = models.CharField(max_length=64, blank=True, default="")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # A profile merged into another keeps a pointer, so late events still land.
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When it was merged (the visitor's timeline shows it); empty for merges made
    # before this was recorded.
    merged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["site", "user_id"],
                condition=models.Q(user_id__isnull=False),
                name="profile_unique_user_id_per_site",
            )
        ]
        indexes = [
            models.Index(fields=["site", "email"], name="profile_site_email"),
            # The admin's search finds an address in any case (email__iexact).
            models.Index(Upper("email"), name="profile_email_upper"),
        ]

    def __str__(self) -> str:
        return self.email or self.user_id or f"profile {self.pk}"

    def as_json(self) -> dict:
        """The person's own fields as the profile API and the access export show them."""
        return {
            "id": self.id,
            "userId": self.user_id,
            "email": self.email,
            "emailVerified": self.email_verified,
            "traits": self.traits,
            "consent": self.consent,
            "gpc": self.gpc,
            "timezone": self.timezone,
            "firstSeenAt": self.first_seen_at.isoformat(),
            "lastSeenAt": self.last_seen_at.isoformat(),
        }


class Visitor(models.Model):
    """One browser: an anonymous ID from the snippet's first-party cookie."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="visitors")
    anonymous_id = models.CharField(max_length=200)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="visitors")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["site", "anonymous_id"], name="visitor_unique_anonymous_id"
            )
        ]

    def __str__(self) -> str:
        return self.anonymous_id


class AdIdentifiers(models.Model):
    """The ad platforms' own identifiers for one browser, kept only while advertising is
    allowed (docs/audiences.md): Meta's first-party `_fbp`/`_fbc` cookies, Google's
    click ids and the GA4 client id from `_ga`, plus the client IP and user agent of
    the browser's last visit (Meta's Conversions API matches on them).

    Written by the flusher from the events' `context.adIds`; deleted with the visitor
    (erasure) and when the person withdraws advertising consent or sends GPC. Never
    returned by a public endpoint.
    """

    visitor = models.OneToOneField(
        Visitor, on_delete=models.CASCADE, primary_key=True, related_name="ad_identifiers"
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, db_index=False)
    fbp = models.CharField(max_length=100, blank=True, default="")
    fbc = models.CharField(max_length=500, blank=True, default="")
    gclid = models.CharField(max_length=200, blank=True, default="")
    gbraid = models.CharField(max_length=200, blank=True, default="")
    wbraid = models.CharField(max_length=200, blank=True, default="")
    ga_client_id = models.CharField(max_length=100, blank=True, default="")
    client_ip = models.CharField(max_length=45, blank=True, default="")
    user_agent = models.CharField(max_length=512, blank=True, default="")
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "ad identifiers"
        verbose_name_plural = "ad identifiers"

    def __str__(self) -> str:
        return f"ad identifiers of {self.visitor_id}"


class Event(models.Model):
    """Read-only view of the partitioned `tracking_event` table."""

    pk = models.CompositePrimaryKey("id", "timestamp")
    id = models.BigIntegerField()
    site = models.ForeignKey(Site, on_delete=models.DO_NOTHING, db_constraint=False)
    profile = models.ForeignKey(
        Profile, null=True, on_delete=models.DO_NOTHING, db_constraint=False
    )
    message_id = models.CharField(max_length=200)
    type = models.CharField(max_length=16)
    name = models.CharField(max_length=200, blank=True)
    anonymous_id = models.CharField(max_length=200, blank=True)
    user_id = models.CharField(max_length=200, blank=True)
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    properties = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    # What the call proved (tracking.trust): 0 a browser's claim, 1 a browser with a proof
    # bound to its userId, 2 the secret key. Rows stored before migration 0011 are 0.
    trust = models.SmallIntegerField(default=0)

    class Meta:
        managed = False
        db_table = "tracking_event"
        ordering = ["-timestamp"]

    def __str__(self) -> str:
        return f"{self.type} {self.name}".strip()


class DroppedCount(models.Model):
    """Counters of input that was refused or dropped on purpose (bots), per site and day."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE)
    day = models.DateField()
    reason = models.CharField(max_length=40)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "day", "reason"], name="dropped_unique_day")
        ]


class EventKey(models.Model):
    """(site, client timestamp, messageId) of every stored event inside the dedupe window.

    The partitioned event table cannot carry a unique key without the partition
    column, so uniqueness lives here; the flusher inserts keys with ON CONFLICT DO
    NOTHING and stores only the events whose key was new. The client's timestamp
    leads so that new keys go to the end of the index (see tracking/storage.py).
    """

    pk = models.CompositePrimaryKey("site_id", "dedupe_at", "message_id")
    site_id = models.BigIntegerField()
    # The timestamp the client sent (before skew correction); 1970-01-01 for events sent
    # without one, 0001-01-01 for keys stored before this column existed.
    dedupe_at = models.DateTimeField()
    message_id = models.CharField(max_length=200)
    received_at = models.DateTimeField()

    class Meta:
        # Keys arrive in received_at order, so a BRIN index (a few pages) serves the
        # window's pruning; a btree here cost every flushed event one more index insert.
        indexes = [BrinIndex(fields=["received_at"], name="eventkey_received_brin")]
