"""What every ad platform module provides, and the values they share.

A platform module (meta, google, ga4) turns a batch's resolved changes (`Item`s)
into the HTTP requests its API documents (`Request`s), reads the API's answer
(`PlatformAnswer`), and says which identifiers it matches on. `outbox` does the rest:
batching, claiming, retries, the dev inbox, remembering what each member was sent.
"""

from __future__ import annotations

import email.utils
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from campaigns.models import PlatformBatch, PlatformDestination


@dataclass(frozen=True)
class Ids:
    """The identifiers one member is known by on the platforms (what PlatformMember
    keeps): a browser's ids from tracking.AdIdentifiers and the change's hashes."""

    fbp: str = ""
    fbc: str = ""
    ga_client_id: str = ""
    client_ip: str = ""
    user_agent: str = ""
    email_sha256: str = ""
    phone_sha256: str = ""
    phone_digits_sha256: str = ""
    external_id_sha256: str = ""


@dataclass(frozen=True)
class Item:
    change_id: int
    action: str  # "add" | "remove"
    member_id: int
    at: datetime
    ids: Ids


@dataclass
class Request:
    """One HTTP request. `payload` is what the platform receives minus the
    credential (the dev inbox stores it as is); `items` counts the changes in it."""

    method: str
    url: str
    payload: dict
    items: int
    # Filled by the platform's `encode` just before sending.
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    send_url: str = ""  # when the credential travels in the URL (GA4's api_secret)


@dataclass(frozen=True)
class PlatformAnswer:
    ok: bool
    status: int | None
    retryable: bool
    error: str = ""
    retry_after: float | None = None  # seconds, from Retry-After


class Platform(Protocol):
    kind: str
    batch_size: int
    # Whether one request may carry joins and leaves together (events: yes;
    # customer lists: an add is a POST/ingest, a removal a DELETE/remove).
    mixed_actions: bool

    def matchable(self, ids: Ids) -> bool:
        """Whether a join with these ids reaches anyone on this platform."""

    def requests(
        self, destination: PlatformDestination, batch: PlatformBatch, items: list[Item],
        now: datetime,
    ) -> list[Request]: ...  # fmt: skip

    def encode(self, destination: PlatformDestination, request: Request, now: datetime) -> None:
        """Set request.headers and request.body, credentials included."""

    def outcome(
        self, status: int | None, headers: dict[str, str], body: bytes, now: datetime
    ) -> PlatformAnswer: ...

    def test_request(self, destination: PlatformDestination, now: datetime) -> Request: ...


def retry_after_seconds(headers: dict[str, str], now: datetime) -> float | None:
    """Retry-After as seconds (RFC 9110: delay-seconds or an HTTP date), or None."""
    raw = headers.get("retry-after", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max((when - now).total_seconds(), 0.0)


def error_text(body: bytes, limit: int = 900) -> str:
    """The API's own error message from a JSON error body, else the raw text."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")[:limit]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        parts = [str(error.get(k)) for k in ("status", "type", "code", "error_subcode")
                 if error.get(k) not in (None, "")]  # fmt: skip
        message = error.get("error_user_msg") or error.get("message") or ""
        return f"{message} ({', '.join(parts)})"[:limit] if parts else str(message)[:limit]
    return json.dumps(data)[:limit]


def compact(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
