"""The per-visitor decision, as pure functions: facts and a clock in, an outcome out.

Nothing here touches the database or reads the clock. `campaigns.engine.tick` loads
the `Facts` of a whole batch in a constant number of queries, calls
`decide_batch`, and writes the outcomes set-based. Tests call `decide` directly
with hand-made facts.

The order of the checks is the product's rule book (docs/campaigns.md):

1. campaign ended (status or end date passed)  → exit, `campaign_ended`
2. the goal happened since the trigger        → exit, `converted`
3. holdout                                    → control, `holdout`
4. email, where the step's channel allows it and the person may be mailed:
   verified address, email consent not withdrawn, not suppressed, not opted
   out of this campaign, under the
   site's and the campaign's frequency caps, outside quiet hours. A capped or
   quiet-hour email is rescheduled (or skipped, per the site's policy).
5. otherwise retarget, where the channel allows it: the step has an audience,
   no Global Privacy Control, advertising consent not withdrawn.
6. otherwise nothing, with the reason that stopped it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC_ZONE = ZoneInfo("UTC")

# Channel policies (Step.Channel values).
EMAIL_ELSE_RETARGET = "email_else_retarget"
EMAIL_ONLY = "email_only"
RETARGET_ONLY = "retarget_only"

# Outcomes (Decision.Outcome values).
EMAIL = "email"
RETARGET = "retarget"
NOTHING = "nothing"
EXIT = "exit"
CONTROL = "control"
RESCHEDULED = "rescheduled"

RESCHEDULE = "reschedule"  # SitePolicy.CapAction
SKIP = "skip"


def holdout_bucket(campaign_id: int, profile_id: int) -> int:
    """A stable number 0–99 for (campaign, person): the first 32 bits of
    md5("<campaign_id>:<profile_id>") modulo 100.

    A person is in a campaign's holdout when their bucket is below the
    campaign's holdout percentage. The same person always lands in the same
    bucket of a campaign (re-entries included), and buckets of different
    campaigns are independent. `campaigns.engine.enrollment` computes exactly this in
    SQL; a test keeps the two in step.
    """
    digest = hashlib.md5(f"{campaign_id}:{profile_id}".encode(), usedforsecurity=False)
    return int(digest.hexdigest()[:8], 16) % 100


@dataclass(frozen=True)
class Policy:
    """A site's sending policy (defaults when the site has none saved)."""

    email_cap_count: int = 3
    email_cap_days: int = 7
    over_cap_action: str = RESCHEDULE
    quiet_hours_enabled: bool = True
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(8, 0)
    quiet_hours_action: str = RESCHEDULE


@dataclass(frozen=True)
class NextStep:
    position: int
    delay_minutes: int
    delay_from: str  # "trigger" | "previous"


@dataclass
class Facts:
    """Everything known about one due enrollment at decision time."""

    enrollment_id: int
    site_id: int
    campaign_id: int
    profile_id: int
    position: int
    enrolled_at: datetime
    is_holdout: bool = False
    campaign_status: str = "active"
    campaign_ends_at: datetime | None = None
    campaign_priority: int = 100
    campaign_cap_count: int | None = None
    campaign_cap_days: int | None = None
    converted: bool = False
    # The step due now (None: it was deleted after enrollment).
    step_id: int | None = None
    channel: str = EMAIL_ELSE_RETARGET
    template_id: int | None = None
    audience_id: int | None = None
    next_step: NextStep | None = None
    email: str | None = None
    email_verified: bool = False
    consent: dict = field(default_factory=dict)
    gpc: bool = False
    timezone: str = "UTC"  # the person's, else the site's
    suppressed: bool = False
    opted_out: bool = False  # left this campaign's emails (preferences page)
    policy: Policy = field(default_factory=Policy)
    # Emails created for this person recently: (created_at, campaign_id), any order.
    recent_emails: list[tuple[datetime, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    outcome: str
    reason: str
    # What to write for the enrollment afterwards.
    status: str = "active"  # active | completed | exited | control
    next_position: int = 0
    due_at: datetime | None = None
    finished: bool = False
    # For a reschedule: the new due time (also in due_at).
    rescheduled_to: datetime | None = None


# --- time helpers --------------------------------------------------------------


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """A time zone by name; unknown or empty names fall back to UTC."""
    try:
        return ZoneInfo(name) if name else UTC_ZONE
    except (ZoneInfoNotFoundError, ValueError):
        return UTC_ZONE


@lru_cache(maxsize=512)
def valid_zone(name: str | None) -> bool:
    if not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def quiet_hours_end(now: datetime, tz_name: str, start: time, end: time) -> datetime | None:
    """When the quiet hours around `now` end (in `tz_name`), or None outside them.

    Quiet hours may wrap midnight (21:00–08:00). Equal start and end: no quiet hours.
    """
    if start == end:
        return None
    tz = zone(tz_name)
    local = now.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    today: date = local.date()
    if start < end:
        quiet = start <= clock < end
        end_day = today
    else:
        quiet = clock >= start or clock < end
        end_day = today if clock < end else today + timedelta(days=1)
    if not quiet:
        return None
    # Combine in local time; zoneinfo resolves DST gaps/overlaps (fold=0).
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(now.tzinfo or UTC_ZONE)


def cap_clears_at(sent: list[datetime], now: datetime, count: int, days: int) -> datetime | None:
    """When one more email fits under "at most `count` in `days` days", or None if it fits now.

    `count` 0 means no cap. With k emails in the window and k ≥ count, the
    (k - count + 1)-th oldest of them must age out first.
    """
    if not count:
        return None
    window = timedelta(days=days)
    in_window = sorted(t for t in sent if t > now - window)
    if len(in_window) < count:
        return None
    return in_window[len(in_window) - count] + window


# --- the decision ----------------------------------------------------------------


def _advance(facts: Facts, now: datetime, outcome: str, reason: str) -> Verdict:
    """A final decision for this step: move on to the next step, or finish."""
    nxt = facts.next_step
    if nxt is None:
        return Verdict(
            outcome,
            reason,
            status="control" if facts.is_holdout else "completed",
            next_position=facts.position,
            finished=True,
        )
    anchor = facts.enrolled_at if nxt.delay_from == "trigger" else now
    return Verdict(
        outcome,
        reason,
        next_position=nxt.position,
        due_at=anchor + timedelta(minutes=nxt.delay_minutes),
    )


def _exit(facts: Facts, reason: str) -> Verdict:
    return Verdict(EXIT, reason, status="exited", next_position=facts.position, finished=True)


def _reschedule(facts: Facts, reason: str, when: datetime) -> Verdict:
    return Verdict(
        RESCHEDULED, reason, next_position=facts.position, due_at=when, rescheduled_to=when
    )


def lasting_email_blocker(facts: Facts) -> str | None:
    """Why this step may not email this person whatever the time (None: it may)."""
    if facts.channel == RETARGET_ONLY:
        return "retarget_only"
    if facts.template_id is None:
        return "no_template"
    if not facts.email or not facts.email_verified:
        return "no_verified_email"
    if facts.consent.get("email") is False:
        return "no_email_consent"
    if facts.suppressed:
        return "suppressed"
    if facts.opted_out:
        return "opted_out"
    return None


def may_email(facts: Facts, now: datetime) -> bool:
    """Whether the decision could be an email, before caps and quiet hours: the people
    whose recent emails must be counted under a lock (campaigns.engine.tick)."""
    ended = facts.campaign_status == "ended" or (
        facts.campaign_ends_at is not None and facts.campaign_ends_at <= now
    )
    return not (ended or facts.converted or facts.step_id is None or facts.is_holdout) and (
        lasting_email_blocker(facts) is None
    )


def email_blocker(facts: Facts, now: datetime) -> tuple[str | None, datetime | None]:
    """Why this person may not be emailed now (None: they may), and when to retry if it's
    a matter of time (frequency cap, quiet hours)."""
    lasting = lasting_email_blocker(facts)
    if lasting is not None:
        return lasting, None
    policy = facts.policy
    site_clear = cap_clears_at(
        [t for t, _ in facts.recent_emails], now, policy.email_cap_count, policy.email_cap_days
    )
    campaign_clear = None
    if facts.campaign_cap_count and facts.campaign_cap_days:
        campaign_clear = cap_clears_at(
            [t for t, c in facts.recent_emails if c == facts.campaign_id],
            now,
            facts.campaign_cap_count,
            facts.campaign_cap_days,
        )
    clears = [t for t in (site_clear, campaign_clear) if t is not None]
    if clears:
        return "frequency_cap", max(clears)
    if policy.quiet_hours_enabled:
        quiet_end = quiet_hours_end(
            now, facts.timezone, policy.quiet_hours_start, policy.quiet_hours_end
        )
        if quiet_end is not None:
            return "quiet_hours", quiet_end
    return None, None


def retarget_blocker(facts: Facts) -> str | None:
    if facts.audience_id is None:
        return "no_audience"
    if facts.gpc:
        return "gpc"
    if facts.consent.get("advertising") is False:
        return "no_ad_consent"
    return None


def decide(facts: Facts, now: datetime) -> Verdict:
    """What to do for this enrollment's due step at `now`. Pure."""
    if facts.campaign_status == "ended" or (
        facts.campaign_ends_at is not None and facts.campaign_ends_at <= now
    ):
        return _exit(facts, "campaign_ended")
    if facts.converted:
        return _exit(facts, "converted")
    if facts.step_id is None:
        return _exit(facts, "step_removed")
    if facts.is_holdout:
        return _advance(facts, now, CONTROL, "holdout")

    blocker, retry_at = email_blocker(facts, now)
    if blocker is None:
        return _advance(facts, now, EMAIL, "emailed")
    if retry_at is not None:
        action = (
            facts.policy.over_cap_action
            if blocker == "frequency_cap"
            else facts.policy.quiet_hours_action
        )
        if action == RESCHEDULE:
            return _reschedule(facts, blocker, retry_at)
    if facts.channel == EMAIL_ONLY:
        return _advance(facts, now, NOTHING, blocker)

    not_retargeted = retarget_blocker(facts)
    if not_retargeted is not None:
        return _advance(facts, now, NOTHING, not_retargeted)
    # Retargeted: say why, when it stands in for an email the step wanted to send.
    return _advance(facts, now, RETARGET, "retargeted" if blocker == "retarget_only" else blocker)


def decide_batch(batch: list[Facts], now: datetime) -> list[Verdict]:
    """Decide a batch in campaign priority order, counting this batch's emails
    against the frequency caps of the people who get them. Results follow `batch`."""
    outcomes: list[Verdict | None] = [None] * len(batch)
    emailed: dict[int, list[tuple[datetime, int]]] = {}
    order = sorted(range(len(batch)), key=lambda i: (batch[i].campaign_priority, i))
    for i in order:
        facts = batch[i]
        extra = emailed.get(facts.profile_id)
        if extra:
            facts = replace(facts, recent_emails=[*facts.recent_emails, *extra])
        outcome = decide(facts, now)
        if outcome.outcome == EMAIL:
            emailed.setdefault(facts.profile_id, []).append((now, facts.campaign_id))
        outcomes[i] = outcome
    return outcomes  # type: ignore[return-value]
