"""A delivery worker SIGKILLed mid-backlog: every join reaches Meta, the replay of the
batch in flight is deduplicated by its event ids, and nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.audiences import membership
from campaigns.audiences.platforms import outbox
from campaigns.models import Audience, AudienceChange, PlatformBatch, PlatformDestination
from tests.audiences.conftest import META_TOKEN, T0
from tests.audiences.platform_standins import MetaStandIn
from tests.conftest import ROOT, child_env
from tests.factories import make_site
from tracking.models import AdIdentifiers, Profile, Visitor

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

COUNT = 1000
BATCH = 10


def many_joins(audience, count: int) -> None:
    site = audience.site
    profiles = Profile.objects.bulk_create(
        Profile(site=site, consent={"advertising": True}, first_seen_at=T0, last_seen_at=T0)
        for _ in range(count)
    )
    visitors = Visitor.objects.bulk_create(
        Visitor(site=site, profile=p, anonymous_id=f"k-{p.id}", first_seen_at=T0,
                last_seen_at=T0)
        for p in profiles
    )  # fmt: skip
    AdIdentifiers.objects.bulk_create(
        AdIdentifiers(visitor=v, site=site, fbp=f"fb.1.1764000000000.{v.id}",
                      user_agent="Mozilla/5.0", client_ip="203.0.113.9", updated_at=T0)
        for v in visitors
    )  # fmt: skip
    membership.add_members([(audience.id, p.id) for p in profiles], now=datetime.now(UTC))


def start_worker(meta_url: str) -> subprocess.Popen:
    log = open(ROOT / ".data" / "test-platforms-worker.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "reengage", "worker", "--pool", "solo",
         "-l", "WARNING", "-n", f"platforms-{os.getpid()}@%h", "--without-heartbeat",
         "--without-mingle", "--without-gossip"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env=child_env(META_GRAPH_URL=meta_url, META_CAPI_BATCH_SIZE=str(BATCH)),
    )  # fmt: skip


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    pytest.fail(f"timed out waiting for {what}")


def test_a_worker_killed_mid_delivery_loses_nothing_and_the_replay_is_deduplicated(
    redis_client, settings
):
    from campaigns.tasks.audiences import send_platform_batch

    settings.META_CAPI_BATCH_SIZE = BATCH
    # Each request takes 30 ms at "Meta", so the kill lands while one is in flight.
    meta = MetaStandIn(token=META_TOKEN, delay=0.03)
    settings.META_GRAPH_URL = meta.url
    (ROOT / ".data").mkdir(exist_ok=True)
    try:
        audience = Audience.objects.create(site=make_site(), name="Killed")
        destination = PlatformDestination(audience=audience, name="pixel", kind="meta_capi",
                                          pixel_id="1234567890")  # fmt: skip
        destination.credential = META_TOKEN
        destination.save()
        many_joins(audience, COUNT)
        outbox.batch_changes(now=datetime.now(UTC))
        assert PlatformBatch.objects.count() == COUNT // BATCH

        worker = start_worker(meta.url)
        try:
            (first,) = outbox.claim_due(now=datetime.now(UTC))
            send_platform_batch.delay(first)
            # Killed while "Meta" is still working on a request: Meta takes its events,
            # the worker never hears back, and the batch goes again after the lease.
            wait_for(lambda: len(meta.events.get("1234567890", [])) >= 300 and meta.in_flight,
                     120, "the worker to deliver 300 events and send one more batch")  # fmt: skip
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        time.sleep(0.1)  # the stand-in finishes the request the worker died waiting for
        received_before = len(meta.events["1234567890"])
        assert 300 <= received_before < COUNT, "the kill must land mid-backlog"
        leased = PlatformBatch.objects.filter(status="pending",
                                              next_attempt_at__gt=datetime.now(UTC))  # fmt: skip
        assert leased.count() <= 1, "at most the batch in flight is held by the dead worker"

        # Once its lease has run out, the batch in flight is sent again, then the rest.
        later = datetime.now(UTC) + timedelta(seconds=settings.AD_PLATFORM_LEASE_SECONDS + 1)
        for batch_id in outbox.claim_due(now=later):
            outbox.send_in_turn(batch_id, clock=lambda: later, budget_seconds=120)

        assert not PlatformBatch.objects.exclude(status="delivered").exists()
        assert meta.violations == []
        expected = {f"reengage-{destination.id}-{c}"
                    for c in AudienceChange.objects.values_list("id", flat=True)}  # fmt: skip
        assert set(meta.unique_events["1234567890"]) == expected, "every join reached Meta"
        replayed = len(meta.events["1234567890"]) - COUNT
        assert replayed == BATCH, "the batch in flight went twice, nothing else"
        print(f"events received {len(meta.events['1234567890'])}, unique {len(expected)}, "
              f"replayed and deduplicated by event_id: {replayed}")  # fmt: skip
    finally:
        meta.close()


def test_the_periodic_task_run_by_a_real_worker_delivers_a_join_within_seconds(
    redis_client, settings
):
    from campaigns.tasks.audiences import deliver_platform_changes

    assert settings.CELERY_BEAT_SCHEDULE["deliver-platform-changes"]["task"] == (
        "campaigns.tasks.audiences.deliver_platform_changes"
    )
    meta = MetaStandIn(token=META_TOKEN)
    (ROOT / ".data").mkdir(exist_ok=True)
    worker = start_worker(meta.url)
    try:
        audience = Audience.objects.create(site=make_site(), name="Periodic")
        destination = PlatformDestination(audience=audience, name="pixel", kind="meta_capi",
                                          pixel_id="1234567890")  # fmt: skip
        destination.credential = META_TOKEN
        destination.save()
        many_joins(audience, 3)
        deliver_platform_changes.delay()
        wait_for(lambda: len(meta.events.get("1234567890", [])) == 3, 60, "three join events")
        wait_for(lambda: PlatformBatch.objects.filter(status="delivered").count() == 1, 30,
                 "the batch to be marked delivered")  # fmt: skip
        assert meta.violations == []
    finally:
        worker.terminate()
        worker.wait(timeout=15)
        meta.close()
