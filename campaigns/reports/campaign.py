"""A campaign's report: what it did per step, and whether it lifts conversions.

Read-only and set-based: `campaign_report` runs a fixed number of aggregate
queries (GROUP BY with FILTER) whatever the campaign's size, so the admin's
report page costs the same for ten enrollments or a million.

**Converted** means an enrollment that exited with the reason `converted`: the
person did the campaign's goal event at or after the trigger, while the
enrollment was running (campaigns.engine.enrollment, GOAL_EXITS). Holdout enrollments
run through the same steps on the same clock (they get a `control` decision
instead of an email), so both groups have the same window to convert in and
their conversion rates compare like for like. Orders after an enrollment
finished are not counted for either group.

The lift is the treated group's conversion rate minus the holdout's, in
percentage points, with a 95 % confidence interval for the difference of two
proportions (normal approximation, unpooled standard error).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from campaigns.models import Attribution, Campaign, Decision, Enrollment, Message, Step
from reengage.money import format_money

Z_95 = 1.959964  # two-sided 95 % quantile of the standard normal

# Below these, a difference in conversion rates is mostly noise: say so instead.
MIN_GROUP_SIZE = 100
MIN_GROUP_CONVERSIONS = 5

CHART_DAYS = 30

FINAL = ~Q(outcome=Decision.Outcome.RESCHEDULED)
DELIVERED = Q(delivered_at__isnull=False) | Q(opened_at__isnull=False) | Q(clicked_at__isnull=False)
OPENED = Q(opened_at__isnull=False) | Q(clicked_at__isnull=False)  # a click implies an open
CLICKED = Q(clicked_at__isnull=False)


@dataclass(frozen=True)
class Lift:
    """Treated minus holdout conversion rate, in percentage points, with its 95 % CI."""

    treated_rate: float  # percent
    holdout_rate: float  # percent
    points: float
    low: float
    high: float


def lift_interval(
    treated_converted: int, treated: int, holdout_converted: int, holdout: int, z: float = Z_95
) -> Lift | None:
    """The difference of two proportions with a normal-approximation interval.

    None when either group is empty (there is no rate to compare).
    """
    if treated <= 0 or holdout <= 0:
        return None
    p1 = treated_converted / treated
    p2 = holdout_converted / holdout
    se = math.sqrt(p1 * (1 - p1) / treated + p2 * (1 - p2) / holdout)
    diff = p1 - p2
    return Lift(
        treated_rate=100 * p1,
        holdout_rate=100 * p2,
        points=100 * diff,
        low=100 * (diff - z * se),
        high=100 * (diff + z * se),
    )


def _points(value: float) -> str:
    # A real minus sign reads better than a hyphen next to "to".
    return f"{value:.1f}".replace("-", "−")


def verdict(treated_converted: int, treated: int, holdout_converted: int, holdout: int) -> str:
    """The lift in plain words, for a marketer who does not read confidence intervals."""
    if holdout == 0:
        return (
            "No holdout group, so the lift cannot be measured: set a holdout percent "
            "above 0 to compare people who get the campaign with people who don't."
        )
    if (
        treated < MIN_GROUP_SIZE
        or holdout < MIN_GROUP_SIZE
        or treated_converted < MIN_GROUP_CONVERSIONS
        or holdout_converted < MIN_GROUP_CONVERSIONS
    ):
        return (
            f"Not enough data yet: each group needs at least {MIN_GROUP_SIZE} people and "
            f"{MIN_GROUP_CONVERSIONS} conversions (now {treated} people and "
            f"{treated_converted} conversions treated, {holdout} people and "
            f"{holdout_converted} conversions in the holdout)."
        )
    lift = lift_interval(treated_converted, treated, holdout_converted, holdout)
    assert lift is not None
    ci = f"95 % CI {_points(lift.low)} to {_points(lift.high)} points"
    if lift.low > 0:
        return f"The campaign is lifting conversions by {_points(lift.points)} points ({ci})."
    if lift.high < 0:
        return (
            f"The campaign is lowering conversions by {_points(-lift.points)} points ({ci}): "
            "the holdout converts more."
        )
    return (
        f"No measurable lift: the difference of {_points(lift.points)} points could be "
        f"chance ({ci})."
    )


def revenue_in_words(revenue: dict[str, Decimal]) -> str:
    """ "€42.50, $10.00" as the emails write money; "0" when nothing was credited."""
    if not revenue:
        return "0"
    return ", ".join(
        format_money(amount, "" if currency == "?" else currency)
        for currency, amount in sorted(revenue.items())
    )


@dataclass
class StepRow:
    position: int
    label: str
    reached: int = 0  # enrollments with a final decision at this step
    emailed: int = 0
    retargeted: int = 0
    nothing: int = 0
    holdout: int = 0
    exited: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    orders: int = 0
    revenue: dict[str, Decimal] = field(default_factory=dict)  # currency → sum

    @property
    def revenue_display(self) -> str:
        return revenue_in_words(self.revenue)


@dataclass
class Day:
    day: date
    enrolled: int = 0
    emailed: int = 0
    retargeted: int = 0
    converted: int = 0


@dataclass
class Report:
    campaign: Campaign
    treated: int
    holdout: int
    treated_converted: int
    holdout_converted: int
    reached: int  # treated enrollments emailed or retargeted at least once
    delivered: int  # ...with an email delivered / opened / clicked (people, not emails)
    opened: int
    clicked: int
    exits: list[tuple[str, str, int]]  # (reason, in words, count)
    steps: list[StepRow]
    days: list[Day]
    lift: Lift | None
    verdict: str
    # Distinct people (treated, holdout, both): `treated` and `holdout` count
    # enrollments, and a person who entered twice is two enrollments. Defaults so
    # that snapshots stored before these fields still load (zero until refreshed).
    treated_people: int = 0
    holdout_people: int = 0
    people: int = 0

    @property
    def enrolled(self) -> int:
        return self.treated + self.holdout

    @property
    def treated_rate(self) -> float | None:
        """Percent of treated enrollments that converted; shown with or without a holdout."""
        return 100 * self.treated_converted / self.treated if self.treated else None

    @property
    def holdout_rate(self) -> float | None:
        return 100 * self.holdout_converted / self.holdout if self.holdout else None

    @property
    def converted(self) -> int:
        return self.treated_converted + self.holdout_converted

    @property
    def emailed(self) -> int:
        return sum(s.emailed for s in self.steps)

    @property
    def retargeted(self) -> int:
        return sum(s.retargeted for s in self.steps)

    @property
    def orders(self) -> int:
        return sum(s.orders for s in self.steps)

    @property
    def revenue(self) -> dict[str, Decimal]:
        total: dict[str, Decimal] = defaultdict(Decimal)
        for step in self.steps:
            for currency, amount in step.revenue.items():
                total[currency] += amount
        return dict(sorted(total.items()))

    @property
    def revenue_display(self) -> str:
        return revenue_in_words(self.revenue)

    @property
    def funnel(self) -> list[tuple[str, int]]:
        """People in the treated group at each stage, trigger to conversion."""
        return [
            ("Triggered (treated enrollments)", self.treated),
            ("Emailed or retargeted", self.reached),
            ("Email delivered", self.delivered),
            ("Email opened", self.opened),
            ("Email clicked", self.clicked),
            ("Converted", self.treated_converted),
        ]


def campaign_report(campaign: Campaign, *, now: datetime) -> Report:
    """Everything the report page shows, in nine aggregate queries."""
    enrollments = Enrollment.objects.filter(campaign=campaign)
    converted = Q(status=Enrollment.Status.EXITED, exit_reason="converted")
    reached = Exists(
        Decision.objects.filter(
            enrollment=OuterRef("pk"),
            outcome__in=[Decision.Outcome.EMAIL, Decision.Outcome.RETARGET],
        )
    )
    totals = enrollments.aggregate(
        treated=Count("pk", filter=Q(is_holdout=False)),
        holdout=Count("pk", filter=Q(is_holdout=True)),
        treated_converted=Count("pk", filter=converted & Q(is_holdout=False)),
        holdout_converted=Count("pk", filter=converted & Q(is_holdout=True)),
        reached=Count("pk", filter=Q(reached, is_holdout=False)),
        treated_people=Count("profile", distinct=True, filter=Q(is_holdout=False)),
        holdout_people=Count("profile", distinct=True, filter=Q(is_holdout=True)),
        people=Count("profile", distinct=True),
    )
    exits = [
        (row["exit_reason"], Decision.REASONS.get(row["exit_reason"], row["exit_reason"]), row["n"])
        for row in enrollments.filter(status=Enrollment.Status.EXITED)
        .values("exit_reason")
        .annotate(n=Count("pk"))
        .order_by("-n", "exit_reason")
    ]
    messages = Message.objects.filter(campaign=campaign)
    people = messages.aggregate(
        delivered=Count("enrollment", distinct=True, filter=DELIVERED),
        opened=Count("enrollment", distinct=True, filter=OPENED),
        clicked=Count("enrollment", distinct=True, filter=CLICKED),
    )

    steps = {
        position: StepRow(position=position, label=f"Step {position + 1}")
        for position in Step.objects.filter(campaign=campaign).values_list("position", flat=True)
    }

    def row(position: int) -> StepRow:
        if position not in steps:  # the step was deleted after people reached it
            steps[position] = StepRow(position, f"Step {position + 1} (deleted)")
        return steps[position]

    by_outcome = (
        Decision.objects.filter(FINAL, campaign=campaign)
        .values("position")
        .annotate(
            reached=Count("pk"),
            emailed=Count("pk", filter=Q(outcome=Decision.Outcome.EMAIL)),
            retargeted=Count("pk", filter=Q(outcome=Decision.Outcome.RETARGET)),
            nothing=Count("pk", filter=Q(outcome=Decision.Outcome.NOTHING)),
            holdout=Count("pk", filter=Q(outcome=Decision.Outcome.CONTROL)),
            exited=Count("pk", filter=Q(outcome=Decision.Outcome.EXIT)),
        )
        .order_by()
    )
    for d in by_outcome:
        r = row(d["position"])
        for name in ("reached", "emailed", "retargeted", "nothing", "holdout", "exited"):
            setattr(r, name, d[name])
    by_message = (
        messages.values("position")
        .annotate(
            delivered=Count("pk", filter=DELIVERED),
            opened=Count("pk", filter=OPENED),
            clicked=Count("pk", filter=CLICKED),
        )
        .order_by()
    )
    for m in by_message:
        r = row(m["position"])
        r.delivered, r.opened, r.clicked = m["delivered"], m["opened"], m["clicked"]
    by_revenue = (
        Attribution.objects.filter(message__campaign=campaign)
        .values("message__position", "currency")
        .annotate(orders=Count("pk"), revenue=Sum("revenue"))
        .order_by()
    )
    for a in by_revenue:
        r = row(a["message__position"])
        r.orders += a["orders"]
        if a["revenue"] is not None:
            r.revenue[a["currency"] or "?"] = a["revenue"]

    today = timezone.localdate(now)
    first = today - timedelta(days=CHART_DAYS - 1)
    since = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    days = {first + timedelta(days=n): Day(first + timedelta(days=n)) for n in range(CHART_DAYS)}
    for e in (
        enrollments.filter(enrolled_at__gte=since)
        .annotate(day=TruncDate("enrolled_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        if e["day"] in days:
            days[e["day"]].enrolled = e["n"]
    for d in (
        Decision.objects.filter(FINAL, campaign=campaign, decided_at__gte=since)
        .annotate(day=TruncDate("decided_at"))
        .values("day")
        .annotate(
            emailed=Count("pk", filter=Q(outcome=Decision.Outcome.EMAIL)),
            retargeted=Count("pk", filter=Q(outcome=Decision.Outcome.RETARGET)),
            converted=Count("pk", filter=Q(outcome=Decision.Outcome.EXIT, reason="converted")),
        )
        .order_by()
    ):
        if d["day"] in days:
            day = days[d["day"]]
            day.emailed, day.retargeted, day.converted = (
                d["emailed"],
                d["retargeted"],
                d["converted"],
            )

    args = (totals["treated_converted"], totals["treated"])
    args += (totals["holdout_converted"], totals["holdout"])
    return Report(
        campaign=campaign,
        treated=totals["treated"],
        holdout=totals["holdout"],
        treated_converted=totals["treated_converted"],
        holdout_converted=totals["holdout_converted"],
        reached=totals["reached"],
        delivered=people["delivered"],
        opened=people["opened"],
        clicked=people["clicked"],
        exits=exits,
        steps=[steps[p] for p in sorted(steps)],
        days=[days[d] for d in sorted(days)],
        lift=lift_interval(*args),
        verdict=verdict(*args),
        treated_people=totals["treated_people"],
        holdout_people=totals["holdout_people"],
        people=totals["people"],
    )
