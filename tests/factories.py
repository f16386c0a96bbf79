"""Small builders for test data (real rows in PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tracking.models import Site


def make_site(**fields) -> Site:
    defaults = {"name": "Shop", "domains": ["shop.test", "localhost", "127.0.0.1"]}
    defaults.update(fields)
    return Site.objects.create(**defaults)


def segment_event(type_: str = "track", **fields) -> dict:
    """A Segment-spec call as an SDK would send it."""
    event = {
        "type": type_,
        "messageId": str(uuid.uuid4()),
        "anonymousId": fields.pop("anonymousId", "anon-1"),
        "timestamp": datetime.now(UTC).isoformat(),
        "context": {"library": {"name": "tests", "version": "1"}},
        "properties": {},
    }
    if type_ == "track":
        event["event"] = fields.pop("event", "Product Viewed")
    event.update(fields)
    return event


def store_calls(site: Site, *calls: dict, trusted: bool, received_at: datetime) -> None:
    """Validate calls as ingest would (write key or, if trusted, secret key) and store them."""
    from tracking.ingest import SiteKey, parse_batch
    from tracking.storage import store_events

    key = SiteKey(site.id, trusted, tuple(site.domains), True, 395, (site.secret_key,), 10**6)
    events, _ = parse_batch({"batch": list(calls)}, key=key, received_at=received_at,
                            client_ip="", single_type=None)  # fmt: skip
    store_events(events, now=received_at)
