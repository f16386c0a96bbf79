"""Validate and normalise Segment-spec calls into reengage's event envelope.

Pure functions, no database: the ingest view calls `parse_batch` and hands the
result to `tracking.buffer`. Every refusal is an `IngestError` naming the field
(`batch[3].event`) and carrying the HTTP status it deserves. Limits below are
documented in docs/api.md; keep the two in step.

The envelope (one dict per event, JSON-serialisable) is what the Redis stream
holds and what `tracking.storage.store_events` writes:

    site_id, message_id, type, name, anonymous_id, user_id, previous_id,
    timestamp, received_at (ISO-8601 UTC), properties, traits, context (dicts),
    email (str or ""), email_verified (bool), consent (dict or None), gpc (bool),
    trust (tracking.trust: 0 browser, 1 proven browser, 2 secret key),
    timezone (str), dedupe_at (the timestamp as the client sent it, before any skew
    correction, or None: with site_id and message_id, the dedupe key)
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from tracking import ad_ids, trust

MAX_BODY_BYTES = 512 * 1024  # a whole request, after gzip decompression
MAX_EVENT_BYTES = 32 * 1024  # one event, as JSON
MAX_BATCH_EVENTS = 500
MAX_ID_LENGTH = 200  # messageId, anonymousId, userId, event name
MAX_STRING_LENGTH = 8 * 1024  # any string value inside properties/traits/context
MAX_KEYS = 200  # keys per object
MAX_DEPTH = 6  # nesting of objects/arrays inside properties/traits/context
MAX_ARRAY_LENGTH = 500
# Browser (write-key) timestamps may lag this much (offline queues); older ones
# are clamped to the receive time. Secret-key calls may backfill up to retention.
BROWSER_BACKFILL = timedelta(hours=24)
MAX_FUTURE_SKEW = timedelta(minutes=5)

TYPES = {"track", "page", "screen", "identify", "alias", "group"}
CONSENT_PURPOSES = ("analytics", "email", "advertising")

# The Segment ecommerce spec (v2) names understood natively; see docs/api.md.
ECOMMERCE_EVENTS = frozenset(
    {
        "Products Searched",
        "Product List Viewed",
        "Product List Filtered",
        "Promotion Viewed",
        "Promotion Clicked",
        "Product Clicked",
        "Product Viewed",
        "Product Added",
        "Product Removed",
        "Cart Viewed",
        "Checkout Started",
        "Checkout Step Viewed",
        "Checkout Step Completed",
        "Payment Info Entered",
        "Order Updated",
        "Order Completed",
        "Order Refunded",
        "Order Cancelled",
        "Coupon Entered",
        "Coupon Applied",
        "Coupon Denied",
        "Coupon Removed",
        "Product Added to Wishlist",
        "Product Removed from Wishlist",
        "Wishlist Product Added to Cart",
        "Product Shared",
        "Cart Shared",
        "Product Reviewed",
    }
)


class IngestError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def as_json(self) -> dict:
        body: dict[str, Any] = {"success": False, "error": self.message}
        if self.field:
            body["field"] = self.field
        return body


@dataclass(frozen=True)
class SiteKey:
    """What the hot path needs to know about the site behind a key (cached)."""

    site_id: int
    trusted: bool  # the secret key: server-side call
    domains: tuple[str, ...]
    anonymize_ip: bool
    retention_days: int
    secret_keys: tuple[str, ...]
    events_per_minute: int
    consent_mode: str = "none"

    def allows_origin(self, host: str) -> bool:
        host = host.lower()
        for domain in self.domains:
            if domain.startswith("*."):
                if host == domain[2:] or host.endswith(domain[1:]):
                    return True
            elif host == domain:
                return True
        return False

    def verify_user_hash(self, email: str, given: str) -> bool:
        """Whether `given` is the old, email-only user_hash of `email` (tracking.trust)."""
        if not given.isascii():
            return False
        return any(hmac.compare_digest(trust.email_hash(k, email), given) for k in self.secret_keys)


def parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise IngestError(400, "must be an ISO-8601 date-time string", field)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise IngestError(400, f"{value[:40]!r} is not an ISO-8601 date-time", field) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00, 9999-12-31T23:59:59-01:00
        raise IngestError(
            400, f"{value[:40]!r} is outside the years 1–9999 in UTC", field
        ) from None


def correct_skew(
    timestamp: datetime, sent_at: datetime, received_at: datetime, field: str
) -> datetime:
    """The event's time on the server's clock, correcting the client's skew the way
    Segment does (received − (sentAt − timestamp)); a skew past the calendar's ends is
    a 400 on the field that carried sentAt."""
    try:
        return received_at - (sent_at - timestamp)
    except OverflowError:
        raise IngestError(
            400, "is too far from the event's timestamp to correct the clock skew", field
        ) from None


# What reaches an email as a price, a quantity or an order value: a number (or a
# numeric string, as some SDKs send) in a range no real cart leaves. A 10-byte
# "1e10000000" must not become a 13 MB email.
MAX_AMOUNT = Decimal("1000000000")  # 1e9 in the site's currency
MAX_QUANTITY = 100_000
AMOUNT_FIELDS = ("price", "revenue", "value", "total", "subtotal", "shipping", "tax", "discount")
_NUMERIC_TEXT = re.compile(r"\s*[+-]?(\d{1,20}(\.\d{0,20})?|\.\d{1,20})\s*")


def check_number(value: Any, field: str, *, limit: Decimal) -> None:
    """Refuse a price/quantity that is not a finite number within ±limit."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise IngestError(400, "must be a number", field)
    if isinstance(value, str):
        if not _NUMERIC_TEXT.fullmatch(value):
            raise IngestError(400, f"{value[:40]!r} is not a plain decimal number", field)
        amount = Decimal(value.strip())
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise IngestError(400, "must be a finite number", field)
        amount = Decimal(repr(value))
    else:
        if abs(value) > limit:  # before Decimal: a 4,000-digit int is cheap to compare
            raise IngestError(400, f"must be between -{limit} and {limit}", field)
        amount = Decimal(value)
    if abs(amount) > limit:
        raise IngestError(400, f"must be between -{limit} and {limit}", field)


def check_amounts(properties: dict, path: str) -> None:
    """Prices, quantities and order values in track properties (and in each of
    `products`), the numbers that reach emails; see MAX_AMOUNT."""
    for name in AMOUNT_FIELDS:
        if properties.get(name) is not None:
            check_number(properties[name], f"{path}.{name}", limit=MAX_AMOUNT)
    if properties.get("quantity") is not None:
        check_number(properties["quantity"], f"{path}.quantity", limit=Decimal(MAX_QUANTITY))
    products = properties.get("products")
    if isinstance(products, list):
        for index, product in enumerate(products):
            if isinstance(product, dict):
                check_amounts(product, f"{path}.products[{index}]")


_MAILBOX_SEPARATORS = frozenset(',;<>"\r\n\t ')


def is_one_mailbox(value: Any) -> bool:
    """One plain address (local@domain), as Django's EmailValidator accepts it, and
    nothing a mail library could read as a list or a display name: "a@x, b@y" would
    go to two people and only the first would be checked against suppressions."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    if not isinstance(value, str) or len(value) > 254 or _MAILBOX_SEPARATORS & set(value):
        return False
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


def check_text(value: str, field: str) -> None:
    """PostgreSQL's text and jsonb refuse NUL and unpaired surrogates: refuse them here,
    so they can never poison a flush batch."""
    if "\x00" in value:
        raise IngestError(400, "contains a NUL character", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise IngestError(400, "contains invalid Unicode (an unpaired surrogate)", field) from None


def is_storable(value: str) -> bool:
    """Whether PostgreSQL can take the string at all (see `check_text`): a key or id
    from a URL or header that is not can match no row, and must not reach a query."""
    return "\x00" not in value and not any("\ud800" <= c <= "\udfff" for c in value)


def check_json_value(value: Any, field: str, depth: int = 0) -> None:
    """Enforce the documented bounds on free-form objects."""
    if depth > MAX_DEPTH:
        raise IngestError(400, f"is nested deeper than {MAX_DEPTH} levels", field)
    if isinstance(value, dict):
        if len(value) > MAX_KEYS:
            raise IngestError(400, f"has more than {MAX_KEYS} keys", field)
        for key, item in value.items():
            if len(key) > MAX_ID_LENGTH:
                raise IngestError(400, f"has a key longer than {MAX_ID_LENGTH}", field)
            check_text(key, field)
            check_json_value(item, f"{field}.{key}", depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_ARRAY_LENGTH:
            raise IngestError(400, f"has more than {MAX_ARRAY_LENGTH} items", field)
        for index, item in enumerate(value):
            check_json_value(item, f"{field}[{index}]", depth + 1)
    elif isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise IngestError(400, f"is longer than {MAX_STRING_LENGTH} characters", field)
        check_text(value, field)
    elif isinstance(value, float) and not math.isfinite(value):
        # NaN from lenient parsers; 1e999 parses as infinity, which jsonb cannot hold
        # (the whole stream entry would fail at flush time, after a 200).
        raise IngestError(400, "is not a finite number", field)


def _object(raw: dict, key: str, path: str) -> dict:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise IngestError(400, "must be a JSON object", f"{path}.{key}")
    check_json_value(value, f"{path}.{key}")
    return value


def _id(raw: dict, key: str, path: str, *, required: bool = False) -> str:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise IngestError(400, "is required", f"{path}.{key}")
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # Segment allows numeric ids
    if not isinstance(value, str):
        raise IngestError(400, "must be a string", f"{path}.{key}")
    value = value.strip()
    if len(value) > MAX_ID_LENGTH:
        raise IngestError(400, f"is longer than {MAX_ID_LENGTH} characters", f"{path}.{key}")
    check_text(value, f"{path}.{key}")
    return value


@lru_cache(maxsize=4096)
def anonymize_ip(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@lru_cache(maxsize=4096)
def is_bot(user_agent: str) -> bool:
    from crawlerdetect import CrawlerDetect

    return bool(user_agent) and CrawlerDetect().isCrawler(user_agent)


def _consent(context: dict, path: str) -> dict | None:
    consent = context.get("consent")
    if consent is None:
        return None
    if not isinstance(consent, dict):
        raise IngestError(400, "must be an object of booleans", f"{path}.context.consent")
    result = {}
    for purpose in CONSENT_PURPOSES:
        if purpose in consent:
            if not isinstance(consent[purpose], bool):
                raise IngestError(400, "must be true or false", f"{path}.context.consent.{purpose}")
            result[purpose] = consent[purpose]
    return result


def _keep_ad_ids(
    context: dict, *, gpc: bool, consent: dict | None, dropped: Counter[str] | None
) -> None:
    """`context.adIds` reduced to the identifiers of the documented form (tracking.ad_ids);
    an invalid one is dropped and counted, never a refusal of the event. An event that
    itself refuses advertising or carries GPC keeps none."""
    raw = context.pop("adIds", None)
    if gpc or (consent or {}).get("advertising") is False:
        return
    kept, invalid = ad_ids.clean(raw)
    if kept:
        context["adIds"] = kept
    if invalid and dropped is not None:
        dropped["ad_id_invalid"] += invalid


def normalize_event(
    raw: Any,
    *,
    path: str,
    key: SiteKey,
    received_at: datetime,
    sent_at: datetime | None,
    client_ip: str,
    default_type: str | None = None,
    check_size: bool = True,
    dropped: Counter[str] | None = None,
) -> dict | None:
    """One Segment call → envelope. Returns None for a bot (dropped, counted).

    `dropped` counts what was left out of the event on purpose, by reason (invalid
    ad identifiers), for the caller to record.
    """
    if not isinstance(raw, dict):
        raise IngestError(400, "must be a JSON object", path)
    if check_size and len(json.dumps(raw, separators=(",", ":"))) > MAX_EVENT_BYTES:
        raise IngestError(413, f"is larger than {MAX_EVENT_BYTES} bytes", path)
    # /v1/track and friends fix the type; in a batch each call names its own.
    event_type = default_type or raw.get("type")
    if not isinstance(event_type, str) or event_type not in TYPES:
        raise IngestError(400, f"must be one of {', '.join(sorted(TYPES))}", f"{path}.type")
    message_id = _id(raw, "messageId", path) or str(uuid.uuid4())
    anonymous_id = _id(raw, "anonymousId", path)
    user_id = _id(raw, "userId", path)
    if not anonymous_id and not user_id:
        raise IngestError(400, "anonymousId or userId is required", f"{path}.anonymousId")
    properties = _object(raw, "properties", path)
    check_amounts(properties, f"{path}.properties")
    traits = _object(raw, "traits", path)
    context = dict(_object(raw, "context", path))

    name = ""
    previous_id = ""
    if event_type == "track":
        name = _id(raw, "event", path, required=True)
    elif event_type in ("page", "screen"):
        name = _id(raw, "name", path)
    elif event_type == "alias":
        previous_id = _id(raw, "previousId", path, required=True)
        if not user_id:
            raise IngestError(400, "is required for alias", f"{path}.userId")
    traits_field = f"{path}.traits"
    if event_type == "identify" and not traits:
        traits = context.get("traits") if isinstance(context.get("traits"), dict) else {}
        traits_field = f"{path}.context.traits"

    timestamp = received_at
    declared = None  # the client's own timestamp, as sent: every retry repeats it
    # Segment's SDKs send `timestamp`; RudderStack's send `originalTimestamp` instead.
    time_key = "timestamp" if raw.get("timestamp") is not None else "originalTimestamp"
    if raw.get(time_key) is not None:
        timestamp = declared = parse_time(raw[time_key], f"{path}.{time_key}")
        event_sent_at = (
            parse_time(raw["sentAt"], f"{path}.sentAt") if raw.get("sentAt") else sent_at
        )
        if event_sent_at is not None:
            sent_field = f"{path}.sentAt" if raw.get("sentAt") else "sentAt"
            timestamp = correct_skew(timestamp, event_sent_at, received_at, sent_field)
    if timestamp > received_at + MAX_FUTURE_SKEW:
        context["originalTimestamp"] = raw.get(time_key)
        timestamp = received_at
    if key.trusted:
        if timestamp < received_at - timedelta(days=key.retention_days):
            raise IngestError(
                400,
                f"is older than the site's retention ({key.retention_days} days)",
                f"{path}.timestamp",
            )
    elif timestamp < received_at - BROWSER_BACKFILL:
        context["originalTimestamp"] = raw.get(time_key)
        timestamp = received_at

    user_agent = context.get("userAgent")
    if isinstance(user_agent, str) and is_bot(user_agent):
        return None

    # IP: a server-side call may state the visitor's IP; a browser's is the client's.
    ip = context.get("ip") if key.trusted and isinstance(context.get("ip"), str) else client_ip
    if ip:
        context["ip"] = anonymize_ip(ip) if key.anonymize_ip else ip
    else:
        context.pop("ip", None)

    # Email and identity: what the call proves decides what it may change (tracking.trust).
    email = ""
    raw_email = traits.get("email") if event_type == "identify" else None
    hash_field = (
        f"{traits_field}.user_hash" if traits.get("user_hash") else f"{path}.context.user_hash"
    )
    user_hash = traits.pop("user_hash", None) or context.pop("user_hash", None)
    # RudderStack's SDKs send an identify's traits in context.traits as well (the Node
    # SDK in both places, and v3 on every later call): the proof is kept in neither.
    context_traits = context.get("traits")
    proof_email = None  # the email a proof repeated in context.traits was computed with
    if isinstance(context_traits, dict) and "user_hash" in context_traits:
        context["traits"] = {k: v for k, v in context_traits.items() if k != "user_hash"}
        if not user_hash:
            user_hash = context_traits["user_hash"]
            hash_field = f"{path}.context.traits.user_hash"
            if event_type != "identify" and isinstance(context_traits.get("email"), str):
                proof_email = context_traits["email"].strip()
    if raw_email is not None:
        if not isinstance(raw_email, str) or not is_one_mailbox(raw_email.strip()):
            raise IngestError(400, "is not one email address", f"{traits_field}.email")
        email = raw_email.strip()
    if user_hash is not None and not isinstance(user_hash, str):
        raise IngestError(400, "must be a string (hex HMAC-SHA256)", hash_field)
    verdict = trust.classify(
        trusted=key.trusted,
        secret_keys=key.secret_keys,
        event_type=event_type,
        user_id=user_id,
        anonymous_id=anonymous_id,
        previous_id=previous_id,
        # A later call repeating the identify's traits (RudderStack) proves the userId
        # with the identify's email; only an identify's own email reaches the profile.
        email=email if proof_email is None else proof_email,
        user_hash=user_hash or "",
    )
    if verdict is None:
        raise IngestError(
            400,
            "does not match: it must be the hex HMAC-SHA256, under the site's secret key, of "
            'userId + "\\n" + the lower-cased email (empty without one); or, for an identify '
            "with an email, of the lower-cased email alone (the older form)",
            hash_field,
        )
    trust_level, email_verified = verdict
    email_verified = email_verified and bool(email)

    gpc = context.get("gpc") is True
    tz = context.get("timezone") if isinstance(context.get("timezone"), str) else ""
    consent = _consent(context, path)
    _keep_ad_ids(context, gpc=gpc, consent=consent, dropped=dropped)

    return {
        "site_id": key.site_id,
        "message_id": message_id,
        "type": event_type,
        "name": name,
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "previous_id": previous_id,
        "timestamp": timestamp.isoformat(),
        "received_at": received_at.isoformat(),
        "properties": properties,
        "traits": traits,
        "context": context,
        "email": email,
        "email_verified": email_verified,
        "trust": trust_level,
        "consent": consent,
        "gpc": gpc,
        "timezone": tz[:64],
        # Times before 1971 would land among the key index's sentinels (storage.NO_TIME,
        # LEGACY_TIME); such events are keyed like those sent without a time.
        "dedupe_at": declared.isoformat() if declared and declared.year > 1970 else None,
    }


def parse_batch(
    payload: Any,
    *,
    key: SiteKey,
    received_at: datetime,
    client_ip: str,
    single_type: str | None,
    body_size: int | None = None,
    dropped: Counter[str] | None = None,
) -> tuple[list[dict], int]:
    """A request body → (envelopes, bots dropped). `single_type` for /v1/track etc.

    `dropped` (optional) counts parts of events left out on purpose, by reason.
    """
    if not isinstance(payload, dict):
        raise IngestError(400, "the body must be a JSON object", "body")
    sent_at = parse_time(payload["sentAt"], "sentAt") if payload.get("sentAt") else None
    if single_type is None:
        batch = payload.get("batch")
        if not isinstance(batch, list):
            raise IngestError(400, "must be a list of events", "batch")
        if not batch:
            raise IngestError(400, "is empty", "batch")
        if len(batch) > MAX_BATCH_EVENTS:
            raise IngestError(413, f"has more than {MAX_BATCH_EVENTS} events", "batch")
        calls = [(item, f"batch[{index}]") for index, item in enumerate(batch)]
    else:
        calls = [(payload, "body")]
    events = []
    bots = 0
    for raw, path in calls:
        event = normalize_event(
            raw,
            path=path,
            key=key,
            received_at=received_at,
            sent_at=sent_at,
            client_ip=client_ip,
            default_type=single_type,
            # No single event can pass the limit when the whole body is under it.
            check_size=body_size is None or body_size > MAX_EVENT_BYTES,
            dropped=dropped,
        )
        if event is None:
            bots += 1
        else:
            events.append(event)
    return events, bots
