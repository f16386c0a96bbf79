"""A claim reads as many rows as it takes, however long the queue or the code pool: the
oldest queued messages first, from the queue's index, and a pool's next free code from
the pool's, never by sorting every queued message or free code."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from campaigns.email.composing import ASSIGN_POOL_CODE
from campaigns.email.outbox import CLAIM_BATCH, claim_batch
from campaigns.models import Message, PromoCode, PromoPool
from tests.email.conftest import T0, make_campaign

pytestmark = pytest.mark.django_db

QUEUED = 5000


def queue(campaign, step, count: int, *, start=T0, spread: bool = True) -> list[Message]:
    """Bare queued messages in one insert, created over 50 seconds (or all at `start`):
    conftest's queue_messages makes a person and an enrollment for each, too slow for
    thousands, and none of them is read here."""
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


def explained(statement: str, marker: str, params: dict) -> list[dict]:
    """The nodes of `statement`'s plan as run (EXPLAIN ANALYZE put before `marker`).
    The statistics still say the tables are empty, as a new campaign's queue or a new
    pool's codes are before autovacuum analyzes them: the plans must not depend on them."""
    explain = statement.replace(marker, "EXPLAIN (ANALYZE, FORMAT JSON) " + marker, 1)
    assert explain != statement
    with connection.cursor() as cursor:
        cursor.execute(explain, params)
        [[plan]] = cursor.fetchone()
    return list(plan_nodes(plan["Plan"]))


def test_a_claim_of_25_reads_25_queued_rows_not_the_whole_queue():
    campaign, step, _ = make_campaign()
    queue(campaign, step, QUEUED)
    params = {"now": T0 + timedelta(hours=1), "limit": 25, "excluded": []}
    nodes = explained(CLAIM_BATCH, "WITH picked", params)
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


def test_a_pools_next_code_is_its_first_free_one_read_from_the_index():
    campaign, step, _ = make_campaign()
    pool = PromoPool.objects.create(site=campaign.site, name="Winter")
    PromoCode.objects.bulk_create(PromoCode(pool=pool, code=f"W{i}") for i in range(QUEUED))
    # Half the pool handed out (the lowest ids): the next free code is in the middle.
    taken = list(PromoCode.objects.order_by("id").values_list("id", flat=True)[: QUEUED // 2])
    holders = queue(campaign, step, len(taken))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_promocode c SET message_id = u.m, handed_out_at = %s"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS u(c, m) WHERE c.id = u.c",
            [T0, taken, [m.pk for m in holders]],
        )
    nodes = explained(ASSIGN_POOL_CODE, "UPDATE", {"message": None, "now": T0, "pool": pool.id})
    scans = [n for n in nodes if n.get("Relation Name") == "campaigns_promocode"]
    assert max(n["Actual Rows"] + n.get("Rows Removed by Filter", 0) for n in scans) == 1, scans
    assert not [n for n in nodes if n["Node Type"] == "Sort"], "the pool must not be sorted"
