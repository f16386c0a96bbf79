"""Several engine processes on one PostgreSQL: each step decided once, a killed one's rows redone.

These run real `manage.py engine tick` subprocesses against the test database,
so the data must be committed: `django_db(transaction=True)`.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest
from django.db import connection
from django.db.models import Count

from campaigns.management.commands.engine import PAUSE_ENV
from campaigns.models import Decision, Enrollment, Message, SitePolicy
from tests.conftest import ROOT, child_env
from tests.engine.conftest import T0, envelope, make_campaign, minutes
from tests.factories import make_site
from tracking.storage import store_events

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_events_left_behind():
    """The flush that ends a transactional test skips the partitioned events table."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tracking_event")


PEOPLE = 400
DUE = T0 + minutes(60)


def seed() -> None:
    site = make_site()
    make_campaign(site)
    events = []
    for n in range(PEOPLE):
        anon = f"c{n}"
        if n % 2:  # half can be emailed, half go to the audience
            email = f"{anon}@example.com"
            events.append(
                envelope(site, type="identify", anonymous_id=anon, at=T0 - minutes(1),
                         traits={"email": email}, email=email, email_verified=True)
            )  # fmt: skip
        events.append(envelope(site, "Product Added", anonymous_id=anon))
    store_events(events, now=T0)
    assert Enrollment.objects.filter(status="active").count() == PEOPLE


def engine_tick(*, batch: int, pause: float = 0) -> subprocess.Popen:
    env = child_env(**({PAUSE_ENV: str(pause)} if pause else {}))
    return subprocess.Popen(
        [sys.executable, "manage.py", "engine", "tick", "--now", DUE.isoformat(),
         "--batch", str(batch)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def decided_count(output: str) -> int:
    first = next(line for line in output.splitlines() if line.startswith("tick at"))
    return int(first.split(": ")[1].split()[0])


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(prefix):
                return line
            assert line or proc.poll() is None, "tick process ended early"
    pytest.fail(f"no {prefix!r} line within {timeout} s")


def wait_for_server_to_roll_back(timeout: float = 10) -> None:
    """PostgreSQL ends a dead client's session when it notices the closed socket."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%%'"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)
    pytest.fail("the killed tick's transaction is still open")


def assert_each_step_decided_once() -> None:
    per_enrollment = Decision.objects.values("enrollment_id", "position").annotate(n=Count("id"))
    assert per_enrollment.count() == PEOPLE
    assert {row["n"] for row in per_enrollment} == {1}
    assert Message.objects.count() == PEOPLE // 2
    assert not Enrollment.objects.filter(status="active").exists()


def test_several_processes_ticking_the_same_due_set_decide_each_step_once():
    seed()

    procs = [engine_tick(batch=15) for _ in range(4)]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], outputs
    assert sum(decided_count(out) for out in outputs) == PEOPLE
    assert_each_step_decided_once()


def test_a_tick_killed_mid_batch_leaves_its_rows_to_the_next_one_and_none_twice():
    seed()
    stuck = engine_tick(batch=50, pause=60)
    assert wait_for_line(stuck, "claimed").strip() == "claimed 50"

    # While it holds its claim, another tick skips those rows and does the rest.
    meanwhile = engine_tick(batch=100)
    out, _ = meanwhile.communicate(timeout=120)
    assert meanwhile.returncode == 0, out
    assert decided_count(out) == PEOPLE - 50

    os.kill(stuck.pid, signal.SIGKILL)
    stuck.wait(timeout=10)
    assert stuck.returncode == -signal.SIGKILL
    assert Enrollment.objects.filter(status="active").count() == 50
    wait_for_server_to_roll_back()

    after = engine_tick(batch=100)
    out, _ = after.communicate(timeout=120)
    assert after.returncode == 0, out
    assert decided_count(out) == 50
    assert_each_step_decided_once()


def test_two_workers_emailing_the_same_person_at_once_respect_the_cap():
    site = make_site()
    SitePolicy.objects.create(site=site, email_cap_count=1, email_cap_days=1)
    make_campaign(site, name="viewed", trigger_event="Product Viewed", priority=1)
    make_campaign(site, name="added", trigger_event="Product Added", priority=2)
    email = "ann@example.com"
    store_events(
        [
            envelope(site, type="identify", anonymous_id="ann", at=T0 - minutes(1),
                     traits={"email": email}, email=email, email_verified=True),
            envelope(site, "Product Viewed", anonymous_id="ann"),
            envelope(site, "Product Added", anonymous_id="ann"),
        ],
        now=T0,
    )  # fmt: skip

    # The first worker claims one of the two enrollments and, holding it, waits.
    first = engine_tick(batch=1, pause=3)
    assert wait_for_line(first, "claimed").strip() == "claimed 1"
    # The second claims the other one (the first's is locked) at the same time.
    second = engine_tick(batch=1)
    outputs = [first.communicate(timeout=60)[0], second.communicate(timeout=60)[0]]

    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert Message.objects.count() == 1
    assert sorted(Decision.objects.values_list("outcome", "reason")) == [
        ("email", "emailed"),
        ("rescheduled", "frequency_cap"),
    ]
