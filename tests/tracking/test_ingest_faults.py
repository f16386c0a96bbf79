"""Nothing acknowledged is lost, nothing doubles: Redis, PostgreSQL and the flusher fail.

Each test runs its own PostgreSQL, Redis and gunicorn (tests/stack.py) and breaks
them, never the suite's shared services.
"""

from __future__ import annotations

import json
import signal
import uuid

import pytest

from tests.stack import start_stack, wait_for

pytestmark = pytest.mark.slow

FAST_RECOVERY = {"FLUSH_CLAIM_IDLE_MS": "300", "FLUSH_LOCK_TTL_SECONDS": "1"}


@pytest.fixture
def stack(tmp_path):
    stack, site = start_stack(tmp_path)
    stack.site = site
    yield stack
    stack.stop()


def send(stack, n: int, prefix: str) -> dict[str, int]:
    """Send n single-event batches; return messageId → HTTP status."""
    statuses = {}
    for i in range(n):
        message_id = f"{prefix}-{i}-{uuid.uuid4().hex[:6]}"
        body = {"batch": [{"type": "track", "event": "Product Viewed", "anonymousId": f"v{i % 7}",
                           "messageId": message_id}]}  # fmt: skip
        statuses[message_id] = stack.post("/v1/batch", body, stack.site["write_key"])
    return statuses


def flush(stack, **env) -> dict:
    result = stack.manage("flush_events", "--budget", "30", check=False, **FAST_RECOVERY, **env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": result.stderr[-2000:]}


def stored_ids(stack) -> list[str]:
    return [row[0] for row in stack.query("SELECT message_id FROM tracking_event")]


def assert_exactly_once(stack, acknowledged: set[str]) -> None:
    ids = stored_ids(stack)
    assert len(ids) == len(set(ids)), "an event was stored twice"
    missing = acknowledged - set(ids)
    assert not missing, f"{len(missing)} acknowledged events were lost"


def test_with_redis_killed_mid_stream_events_go_to_postgres_and_none_is_lost(stack):
    before = send(stack, 30, "before")
    stack.kill_redis()
    during = send(stack, 30, "during")
    assert set(during.values()) == {200}, "with Redis down, PostgreSQL takes the events"
    stack.start_redis()  # same AOF directory: the stream comes back
    after = send(stack, 10, "after")
    flush(stack)
    acknowledged = {m for part in (before, during, after) for m, s in part.items() if s == 200}
    assert len(acknowledged) == 70
    assert_exactly_once(stack, acknowledged)


def test_with_postgres_down_events_wait_in_redis_and_are_flushed_when_it_returns(stack):
    stack.stop_postgres()
    acknowledged = {m for m, s in send(stack, 40, "pgdown").items() if s == 200}
    assert len(acknowledged) == 40, "Redis takes events while PostgreSQL is down"
    failed = flush(stack)
    assert failed.get("errors") or "error" in failed
    stack.start_postgres()
    result = flush(stack)
    assert result["stored"] == 40
    assert_exactly_once(stack, acknowledged)


def test_with_both_down_the_answer_is_503_and_nothing_is_acknowledged(stack):
    stack.kill_redis()
    stack.stop_postgres()
    statuses = send(stack, 3, "both")
    assert set(statuses.values()) == {503}


def test_a_flusher_killed_after_commit_before_ack_duplicates_nothing(stack):
    acknowledged = {m for m, s in send(stack, 50, "kill").items() if s == 200}
    victim = stack.python(
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','reengage.settings');"
        "django.setup(); from tracking import flush; flush.flush_once()",
        REENGAGE_FAULT_FLUSH_PAUSE_BEFORE_ACK="60",
        **FAST_RECOVERY,
    )
    wait_for(lambda: "pausing before ack" in (victim.stdout.readline() or ""), what="commit")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert len(stored_ids(stack)) == 50  # committed, but the stream entries are still pending
    result = flush(stack)
    assert result["events"] == 50 and result["stored"] == 0  # replayed, all deduplicated
    assert_exactly_once(stack, acknowledged)


def test_a_flusher_killed_mid_transaction_loses_nothing(stack):
    acknowledged = {m for m, s in send(stack, 60, "mid").items() if s == 200}
    # Hold the write lock so the victim blocks inside its transaction, then kill it.
    import psycopg2

    holder = psycopg2.connect(host=str(stack.socket_dir), user="postgres", dbname="reengage")
    holder.cursor().execute("SELECT pg_advisory_lock(7346001)")
    victim = stack.python(
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','reengage.settings');"
        "django.setup(); from tracking import flush; flush.flush_once()",
        **FAST_RECOVERY,
    )
    wait_for(
        lambda: stack.query(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%pg_advisory_xact_lock%'"
        )[0][0] == 1,
        what="the victim waiting inside its transaction",
    )  # fmt: skip
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    holder.close()
    assert stored_ids(stack) == []
    result = flush(stack)
    assert result["stored"] == 60
    assert_exactly_once(stack, acknowledged)


def test_health_names_the_broken_part(stack):
    stack.kill_redis()
    status, body = stack.get("/healthz")
    assert status == 503
    assert "redis" in json.loads(body)["down"]
