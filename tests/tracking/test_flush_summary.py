"""The flusher's log: silent while idle, one line a minute with counts otherwise."""

from tracking.tasks import FlushSummary


def test_idle_runs_never_log():
    summary = FlushSummary()
    assert all(summary.add(0, 0, 0, now=float(second)) is None for second in range(600))


def test_busy_runs_are_summed_into_one_line_a_minute():
    summary = FlushSummary()
    lines = [summary.add(10, 8, 0, now=float(second)) for second in range(0, 122)]
    said = [line for line in lines if line]
    assert len(said) == 2
    assert said[0] == "flushed 610 events in 61 runs over the last 60s: 488 new, 0 dead-lettered"


def test_the_last_busy_minute_is_reported_by_a_later_idle_run():
    summary = FlushSummary()
    assert summary.add(5, 5, 1, now=100.0) is None
    assert summary.add(0, 0, 0, now=130.0) is None
    line = summary.add(0, 0, 0, now=160.0)
    assert line == "flushed 5 events in 1 runs over the last 60s: 5 new, 1 dead-lettered"
    assert summary.add(0, 0, 0, now=400.0) is None
