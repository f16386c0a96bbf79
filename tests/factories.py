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
