"""The dead-letter stream: bounded, counted on /healthz, replayed by the command."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from tests.engine.conftest import envelope
from tests.factories import make_site
from tests.tracking.test_flush import add, names
from tracking import buffer, flush

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    return make_site()


def poison(site, name: str) -> dict:
    bad = envelope(site, name)
    bad["timestamp"] = "not a time"  # what PostgreSQL refuses at COPY time
    return bad


def test_the_dead_letter_stream_is_trimmed_to_its_bound(stream, site, settings):
    settings.FLUSH_DEAD_LETTERS_MAX = 100
    for i in range(400):
        add(stream, [poison(site, f"bad-{i}")])
    while flush.flush_once(max_events=200).entries:
        pass
    # XADD MAXLEN ~ trims whole radix-tree nodes (100 entries each by default), so the
    # length stays within one node of the bound, never the 400 written.
    assert 100 <= stream.xlen(flush.DEAD_LETTERS) <= 200
    # The newest are the ones kept.
    newest = flush.dead_letters(count=1000)[-1][1]
    assert "bad-399" in newest["c"]


def test_healthz_shows_how_many_dead_letters_there_are(client, stream, site):
    assert client.get("/healthz").json()["dead_letters"] == 0
    add(stream, [poison(site, "bad")])
    flush.flush_once()
    assert client.get("/healthz").json()["dead_letters"] == 1


def test_the_command_replays_a_dead_letter_once_its_cause_is_gone(client, stream, site):
    """A good entry dead-lettered by a since-fixed cause (here: moved by hand, as the
    flusher does) is stored by `flush_events --replay-dead-letters` and a flush."""
    entry_id = add(stream, [envelope(site, "Kept")])
    [(_, [(read_id, fields)])] = stream.xreadgroup(
        buffer.GROUP, "test", {buffer.STREAM: ">"}, count=1
    )
    assert read_id == entry_id
    stream.xadd(flush.DEAD_LETTERS, {**fields, b"error": b"a bug since fixed", b"entry": entry_id})
    stream.xack(buffer.STREAM, buffer.GROUP, entry_id)
    stream.xdel(buffer.STREAM, entry_id)
    assert client.get("/healthz").json()["dead_letters"] == 1

    out = StringIO()
    call_command("flush_events", "--replay-dead-letters", stdout=out)
    assert "replayed 1 dead-lettered entries" in out.getvalue()
    flush.flush_once()

    assert names(site) == ["Kept"]
    assert stream.xlen(flush.DEAD_LETTERS) == 0
    assert client.get("/healthz").json()["dead_letters"] == 0
