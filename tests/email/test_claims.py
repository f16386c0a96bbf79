"""A claim reads as many queued rows as it takes, however long the queue: the oldest
first, from the queue's index, never by sorting every queued message."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from campaigns.email.outbox import CLAIM_BATCH, claim_batch
from campaigns.models import Message
from tests.email.conftest import T0, make_campaign

pytestmark = pytest.mark.django_db

QUEUED = 5000


def queue(campaign, step, count: int, *, start=T0, spread: bool = True) -> list[Message]:
    return Message.objects.bulk_create(
        Message(site=campaign.site, campaign=campaign, step=step, position=step.position,
                template=step.template, to_email=f"p{i}@example.com",
                created_at=start + timedelta(seconds=i % 50 if spread else 0))
        for i in range(count)
    )  # fmt: skip


def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def test_a_claim_of_25_reads_25_queued_rows_not_the_whole_queue():
    campaign, step, _ = make_campaign()
    queue(campaign, step, QUEUED)
    # The statistics still say the table is empty, as a campaign's new queue is before
    # autovacuum analyzes it: the claim's plan must not depend on them.
    explain = CLAIM_BATCH.replace("WITH picked", "EXPLAIN (ANALYZE, FORMAT JSON) WITH picked")
    assert explain != CLAIM_BATCH
    with connection.cursor() as cursor:
        cursor.execute(explain, {"now": T0 + timedelta(hours=1), "limit": 25, "excluded": []})
        [[explained]] = cursor.fetchone()
    nodes = list(plan_nodes(explained["Plan"]))
    scans = [n for n in nodes if n.get("Relation Name") == "campaigns_message"]
    assert max(n["Actual Rows"] for n in scans) == 25, scans
    assert not [n for n in nodes if n["Node Type"] == "Sort"], "the queue must not be sorted"


def test_the_oldest_are_claimed_first_and_ties_go_by_id():
    campaign, step, _ = make_campaign()
    newer = queue(campaign, step, 2, start=T0 + timedelta(minutes=5), spread=False)
    older = queue(campaign, step, 3, spread=False)  # higher ids, all at T0
    claimed = claim_batch(T0 + timedelta(hours=1), 4, [])
    assert {message_id for message_id, _ in claimed} == {m.pk for m in older} | {newer[0].pk}
    assert set(Message.objects.filter(status="sending").values_list("pk", flat=True)) == {
        message_id for message_id, _ in claimed
    }
