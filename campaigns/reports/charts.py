"""Geometry for the report's charts, drawn as inline SVG by the template.

Server-side SVG needs no script and no CDN, so it works under the admin's
Content-Security-Policy (`script-src 'self'`) and with JavaScript off.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.audiences import DayCount
from campaigns.reports.campaign import Day

WIDTH = 720
HEIGHT = 180
BOTTOM = 20  # room for the date labels
FUNNEL_ROW = 30
FUNNEL_LABEL = 180


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str  # the CSS class, and the legend's name
    title: str  # the tooltip


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "start"  # SVG text-anchor


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[Label]
    peak: int


SERIES = [("enrolled", "Enrolled"), ("emailed", "Emailed"), ("converted", "Converted")]


def daily_chart(days: list[Day]) -> Chart:
    """Per day, side by side: enrolled, emailed and converted. A date every 7 days,
    counted back from today so that the last day always has one."""
    peak = max([getattr(d, s) for d in days for s, _ in SERIES] + [1])
    plot = HEIGHT - BOTTOM
    slot = WIDTH / max(len(days), 1)
    bar_width = (slot - 2) / len(SERIES)
    bars, labels = [], []
    for i, day in enumerate(days):
        for j, (series, name) in enumerate(SERIES):
            value = getattr(day, series)
            height = plot * value / peak
            bars.append(
                Bar(
                    x=round(i * slot + 1 + j * bar_width, 1),
                    y=round(plot - height, 1),
                    width=round(bar_width, 1),
                    height=round(height, 1),
                    series=series,
                    title=f"{day.day:%d %b}: {value} {name.lower()}",
                )
            )
        if (len(days) - 1 - i) % 7 == 0:
            labels.append(date_label(day.day, i, len(days), slot))
    return Chart(WIDTH, HEIGHT, bars, labels, peak)


def date_label(day, i: int, count: int, slot: float) -> Label:
    """The date under slot i of count; the last one ends at the chart's right edge."""
    last = i == count - 1
    return Label(
        x=round((i + 1) * slot if last else (i + 0.5) * slot, 1),
        y=HEIGHT - 5,
        text=f"{day:%d %b}",
        anchor="end" if last else "middle",
    )


def funnel_chart(stages: list[tuple[str, int]]) -> Chart:
    """One horizontal bar per stage, as wide as its share of the first stage."""
    top = max(stages[0][1] if stages else 0, 1)
    room = WIDTH - FUNNEL_LABEL - 90
    bars, labels = [], []
    for i, (name, value) in enumerate(stages):
        y = i * FUNNEL_ROW
        share = value / top
        bars.append(
            Bar(
                x=FUNNEL_LABEL,
                y=y + 4,
                width=round(max(room * min(share, 1), 1), 1),
                height=FUNNEL_ROW - 8,
                series="funnel",
                title=f"{name}: {value}",
            )
        )
        labels.append(Label(x=0, y=y + FUNNEL_ROW / 2 + 5, text=name))
        labels.append(
            Label(
                x=FUNNEL_LABEL + room + 8,
                y=y + FUNNEL_ROW / 2 + 5,
                text=f"{value} ({100 * share:.0f} %)" if i else str(value),
            )
        )
    return Chart(WIDTH, FUNNEL_ROW * len(stages), bars, labels, top)


def members_chart(history: list[DayCount], label_every: int = 14) -> Chart:
    """An audience's members at the end of each day, one bar a day; a date every
    `label_every` days, counted back from today so that today always has one."""
    peak = max([d.members for d in history] + [1])
    plot = HEIGHT - BOTTOM
    slot = WIDTH / max(len(history), 1)
    bars, labels = [], []
    for i, day in enumerate(history):
        height = plot * max(day.members, 0) / peak
        bars.append(
            Bar(
                x=round(i * slot, 1),
                y=round(plot - height, 1),
                width=round(max(slot - 1, 0.5), 1),
                height=round(height, 1),
                series="members",
                title=f"{day.day:%d %b}: {day.members} members (+{day.added} / −{day.removed})",
            )
        )
        if (len(history) - 1 - i) % label_every == 0:
            labels.append(date_label(day.day, i, len(history), slot))
    return Chart(WIDTH, HEIGHT, bars, labels, peak)
