"""Orders credited to the email a person clicked (or opened) shortly before."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from campaigns.models import Attribution, EmailSettings, Message
from tests.email.conftest import T0, make_campaign, queue_messages
from tracking.models import Site, Visitor
from tracking.storage import store_events

pytestmark = pytest.mark.django_db


def order(site_id: int, anonymous_id: str, at, trust: int = 2, **properties) -> dict:
    """A stored-event envelope as the ingest view builds it (by default for a call with the
    secret key, trust 2; a browser's is 0, with a userId-bound user_hash 1)."""
    return {
        "site_id": site_id, "message_id": str(uuid.uuid4()), "type": "track",
        "name": "Order Completed", "anonymous_id": anonymous_id, "user_id": "",
        "previous_id": "", "timestamp": at.isoformat(), "received_at": at.isoformat(),
        "properties": {"order_id": "o-1", "currency": "eur", **properties}, "traits": {},
        "context": {}, "email": "", "email_verified": False, "consent": None, "gpc": False,
        "timezone": "", "trust": trust,
    }  # fmt: skip


@pytest.fixture
def clicked():
    """A message sent at T0 and clicked an hour later, and the person's browser."""
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)
    Message.objects.filter(pk=message.pk).update(
        status="clicked", sent_at=T0, opened_at=T0 + timedelta(minutes=30),
        clicked_at=T0 + timedelta(hours=1),
    )  # fmt: skip
    Visitor.objects.create(site=campaign.site, anonymous_id="anon-ada", profile=message.profile,
                           first_seen_at=T0, last_seen_at=T0)  # fmt: skip
    return message


def test_an_order_within_the_window_after_a_click_is_credited_with_its_revenue(clicked):
    at = T0 + timedelta(days=3)
    store_events([order(clicked.site_id, "anon-ada", at, revenue=120.5)], now=at)

    credit = Attribution.objects.get()
    assert credit.message_id == clicked.pk
    assert credit.revenue == Decimal("120.50")
    assert credit.currency == "EUR"
    assert credit.ordered_at == at


def test_an_order_after_the_window_is_not_credited(clicked):
    at = T0 + timedelta(hours=1) + timedelta(days=5, seconds=1)
    store_events([order(clicked.site_id, "anon-ada", at, revenue=10)], now=at)
    assert not Attribution.objects.exists()


def test_an_open_counts_only_where_the_site_says_so(clicked):
    Message.objects.filter(pk=clicked.pk).update(clicked_at=None)
    at = T0 + timedelta(days=1)
    store_events([order(clicked.site_id, "anon-ada", at, total="99.90")], now=at)
    assert not Attribution.objects.exists()

    EmailSettings.objects.create(site_id=clicked.site_id, attribute_opens=True)
    store_events([order(clicked.site_id, "anon-ada", at, total="99.90")], now=at)
    assert Attribution.objects.get().revenue == Decimal("99.90")


def test_a_replayed_order_is_credited_once_and_odd_revenue_does_not_break_the_flush(clicked):
    at = T0 + timedelta(days=1)
    event = order(clicked.site_id, "anon-ada", at, revenue="lots", value=42)
    store_events([event], now=at)
    store_events([event], now=at)  # the flusher replays a batch

    credit = Attribution.objects.get()
    assert credit.revenue == Decimal("42.00")


@pytest.mark.parametrize("trust", [0, 1], ids=["write key", "write key with user_hash"])
def test_a_browser_order_is_credited_without_its_revenue_unless_the_site_allows_it(clicked, trust):
    # The write key is public: a browser states any revenue it likes (issue 14, item 8).
    at = T0 + timedelta(days=1)
    store_events([order(clicked.site_id, "anon-ada", at, trust=trust, revenue=10**9)], now=at)
    credit = Attribution.objects.get()
    assert (credit.message_id, credit.revenue) == (clicked.pk, None)

    Site.objects.filter(pk=clicked.site_id).update(browser_order_revenue=True)
    later = at + timedelta(hours=1)
    store_events([order(clicked.site_id, "anon-ada", later, trust=trust, revenue=25)], now=later)
    assert Attribution.objects.get(ordered_at=later).revenue == Decimal("25.00")
