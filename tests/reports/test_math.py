"""The lift, its confidence interval and the verdict, against hand-computed numbers;
the charts' geometry."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from campaigns.reports.campaign import Day, lift_interval, verdict
from campaigns.reports.charts import daily_chart, funnel_chart


def test_the_lift_interval_matches_a_hand_computed_one():
    # 30/200 = 15 % vs 10/200 = 5 %: se = √(.15·.85/200 + .05·.95/200) = √.000875 = .0295804,
    # 1.959964 · .0295804 = .0579765, so 10 points ± 5.80.
    lift = lift_interval(30, 200, 10, 200)
    assert lift.treated_rate == pytest.approx(15.0)
    assert lift.holdout_rate == pytest.approx(5.0)
    assert lift.points == pytest.approx(10.0)
    assert lift.low == pytest.approx(4.2023, abs=1e-3)
    assert lift.high == pytest.approx(15.7977, abs=1e-3)


def test_the_lift_interval_handles_groups_of_different_sizes():
    # 120/1000 = 12 % vs 10/100 = 10 %: se = √(.12·.88/1000 + .1·.9/100) = √.0010056 = .0317112,
    # 1.959964 · .0317112 = .0621528, so 2 points ± 6.22.
    lift = lift_interval(120, 1000, 10, 100)
    assert lift.points == pytest.approx(2.0)
    assert lift.low == pytest.approx(-4.2153, abs=1e-3)
    assert lift.high == pytest.approx(8.2153, abs=1e-3)


def test_there_is_no_lift_without_people_in_both_groups():
    assert lift_interval(5, 100, 0, 0) is None
    assert lift_interval(0, 0, 5, 100) is None


def test_a_clear_lift_is_said_with_its_interval():
    assert verdict(30, 200, 10, 200) == (
        "The campaign is lifting conversions by 10.0 points (95 % CI 4.2 to 15.8 points)."
    )


def test_an_interval_across_zero_is_no_measurable_lift():
    assert verdict(120, 1000, 10, 100) == (
        "No measurable lift: the difference of 2.0 points could be chance "
        "(95 % CI −4.2 to 8.2 points)."
    )


def test_a_campaign_that_does_worse_than_the_holdout_is_said_so():
    text = verdict(10, 200, 30, 200)
    assert text.startswith("The campaign is lowering conversions by 10.0 points")
    assert "95 % CI −15.8 to −4.2 points" in text


@pytest.mark.parametrize(
    ("treated_converted", "treated", "holdout_converted", "holdout"),
    [
        (30, 99, 10, 200),  # treated group too small
        (30, 200, 10, 99),  # holdout too small
        (4, 200, 10, 200),  # too few treated conversions
        (30, 200, 4, 200),  # too few holdout conversions
    ],
)
def test_below_the_thresholds_it_is_not_enough_data_yet(
    treated_converted, treated, holdout_converted, holdout
):
    assert verdict(treated_converted, treated, holdout_converted, holdout).startswith(
        "Not enough data yet"
    )


def test_exactly_at_the_thresholds_the_verdict_is_given():
    assert verdict(30, 100, 5, 100).startswith("The campaign is lifting conversions by 25.0 points")


def test_without_a_holdout_it_says_how_to_measure_lift():
    assert "set a holdout percent above 0" in verdict(30, 200, 0, 0)


def test_the_daily_chart_labels_today_and_every_seventh_day_before_it():
    first = date(2026, 10, 31)
    chart = daily_chart([Day(first + timedelta(days=n), enrolled=n) for n in range(30)])
    assert [label.text for label in chart.labels] == [
        "01 Nov", "08 Nov", "15 Nov", "22 Nov", "29 Nov"
    ]  # fmt: skip
    assert chart.labels[-1].anchor == "end" and chart.labels[-1].x == chart.width
    tallest = max(chart.bars, key=lambda bar: bar.height)
    assert (tallest.series, tallest.y, chart.peak) == ("enrolled", 0, 29)


def test_the_funnel_bars_shrink_with_each_stage():
    chart = funnel_chart([("Triggered", 200), ("Clicked", 50), ("Converted", 0)])
    widths = [bar.width for bar in chart.bars]
    assert widths[1] == widths[0] / 4 and widths[2] == 1  # an empty stage still shows
    assert [label.text for label in chart.labels[1::2]] == ["200", "50 (25 %)", "0 (0 %)"]
