"""The flusher's stream handling: entry formats, pass sizes and dead letters."""

from __future__ import annotations

import json

import pytest

from tests.engine.conftest import envelope
from tests.factories import make_site
from tracking import buffer, flush
from tracking.models import Event
from tracking.storage import ROWS_FORMAT, encode_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    return make_site()


def add(stream, events: list[dict]) -> bytes:
    return stream.xadd(
        buffer.STREAM, {"c": encode_rows(events), "n": len(events), "f": ROWS_FORMAT}
    )


def names(site) -> list[str]:
    return sorted(Event.objects.filter(site=site).values_list("name", flat=True))


def test_an_entry_written_before_staging_rows_is_still_flushed(stream, site):
    """Entries an older version left on the stream (JSON envelopes) survive an upgrade."""
    stream.xadd(buffer.STREAM, {"e": json.dumps([envelope(site, "Legacy")])})
    add(stream, [envelope(site, "Current")])

    result = flush.flush_once()

    assert (result.entries, result.events, result.stored) == (2, 2, 2)
    assert names(site) == ["Current", "Legacy"]


def test_an_entry_of_rows_without_the_dedupe_time_is_still_flushed(stream, site):
    """Format-1 rows (before `dedupe_at`) from an older version: converted, not refused."""
    old = envelope(site, "Format1")
    old.update(email="", consent=None, dedupe_at=None, trust=0)
    rows = encode_rows([old])
    # The empty dedupe_at and the trust columns: what format 1 lacks.
    assert rows.endswith(b',"",0\n')
    stream.xadd(buffer.STREAM, {"c": rows[:-6] + b"\n", "n": 1})
    add(stream, [envelope(site, "Current")])

    result = flush.flush_once()

    assert (result.entries, result.events, result.stored, result.dead_letters) == (2, 2, 2, 0)
    assert names(site) == ["Current", "Format1"]


def test_an_entry_of_rows_without_the_trust_level_is_flushed_as_a_browsers(stream, site):
    """Format-2 rows (before `trust`) from an older version: stored, as a browser's claim
    (the row does not say which key sent it, so it gets no more than the write key's)."""
    old = envelope(site, "Format2")
    old.update(email="", consent=None, dedupe_at=None, trust=2)
    rows = encode_rows([old])
    assert rows.endswith(b",2\n")
    stream.xadd(buffer.STREAM, {"c": rows[:-3] + b"\n", "n": 1, "f": 2})
    add(stream, [envelope(site, "Current")])

    result = flush.flush_once()

    assert (result.entries, result.events, result.stored, result.dead_letters) == (2, 2, 2, 0)
    assert dict(Event.objects.filter(site=site).values_list("name", "trust")) == {
        "Current": 2, "Format2": 0}  # fmt: skip


def test_a_pass_stops_at_about_max_events_and_the_next_takes_the_rest(stream, site):
    for batch in range(30):
        add(stream, [envelope(site, f"b{batch}") for _ in range(10)])

    first = flush.flush_once(max_events=125)

    # Whole entries; a first read of 10 tells their size, the next asks for what fits.
    assert (first.entries, first.events) == (12, 120)
    assert flush.flush_once(max_events=125).events == 120
    assert flush.flush_once(max_events=125).events == 60
    assert flush.flush_once(max_events=125).entries == 0
    assert Event.objects.filter(site=site).count() == 300
    assert stream.xlen(buffer.STREAM) == 0


def test_an_entry_postgres_refuses_is_dead_lettered_and_the_rest_stored(stream, site):
    add(stream, [envelope(site, "before")])
    bad = envelope(site, "refused")
    bad["timestamp"] = "not a time"
    bad_id = add(stream, [bad])
    add(stream, [envelope(site, "after")])

    result = flush.flush_once()

    assert (result.stored, result.dead_letters) == (2, 1)
    assert names(site) == ["after", "before"]
    [(_, fields)] = flush.dead_letters()
    assert fields["entry"] == bad_id.decode()
    assert "not a time" in fields["error"] and "not a time" in fields["c"]
    assert stream.xlen(buffer.STREAM) == 0  # acknowledged and deleted, kept only as a letter

    # After the fix (here: none), replay puts the entry back; refused again, it returns.
    assert flush.replay_dead_letters() == 1
    assert stream.xlen(buffer.STREAM) == 1 and not flush.dead_letters()
    assert flush.flush_once().dead_letters == 1
    assert len(flush.dead_letters()) == 1
