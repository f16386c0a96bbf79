"""A campaign in the marketer's words: who enters, what happens, when it stops.

Shown at the top of the campaign's admin page, so the JSON of the conditions
and the numbers of the steps read as the sentences a marketer would say.
"""

from __future__ import annotations

from typing import Any

from campaigns.models import Campaign, Step

OPS_IN_WORDS = {
    "=": "is", "!=": "is not", ">": "is more than", ">=": "is at least", "<": "is less than",
    "<=": "is at most", "contains": "contains", "not contains": "does not contain",
    "exists": "is set",
}  # fmt: skip
STAGE_IN_WORDS = {
    "browse": "viewed a product",
    "cart": "added to the cart",
    "checkout": "started the checkout",
}


def duration(minutes: int) -> str:
    for size, unit in ((1440, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0 and minutes >= size:
            count = minutes // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return "0 minutes"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else f"“{value}”"


def condition_in_words(condition: dict, key: str = "property") -> str:
    op = condition.get("op")
    words = f"{condition.get(key)} {OPS_IN_WORDS.get(op, op)}"
    return words if op == "exists" else f"{words} {_value(condition.get('value'))}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def who_enters(campaign: Campaign) -> str:
    text = f"Enters: a visitor who does “{campaign.trigger_event}”"
    if campaign.trigger_conditions:
        text += " where " + " and ".join(condition_in_words(c) for c in campaign.trigger_conditions)
    if campaign.reentry_cooldown_hours:
        text += f", at most once in {duration(campaign.reentry_cooldown_hours * 60)}"
    return text + "."


def only_if(audience: dict) -> str:
    """The audience conditions as "Only if …", or "" when anyone may enter."""
    terms = []
    if audience.get("email") == "verified":
        terms.append("they have a verified email")
    elif audience.get("email") == "unverified":
        terms.append("they have no verified email")
    if audience.get("visitor", "any") != "any":
        terms.append(f"they are a {audience['visitor']} visitor")
    if audience.get("stage", "any") != "any":
        terms.append(f"they {STAGE_IN_WORDS[audience['stage']]} in the last 30 days")
    terms += [f"their {condition_in_words(c, 'trait')}" for c in audience.get("traits", [])]
    return f"Only if {_and(terms)}." if terms else ""


def step_in_words(step: Step) -> str:
    names = [f"“{v.template}”" for v in step.variants.all()] or [f"“{step.template}”"]
    email = f"email {' or '.join(names)}" + (" (A/B test)" if len(names) > 1 else "")
    join = f"join the audience “{step.audience}”"
    action = {
        Step.Channel.EMAIL_ONLY: email,
        Step.Channel.RETARGET_ONLY: join,
        Step.Channel.EMAIL_ELSE_RETARGET: f"{email}; if they cannot be emailed, {join}",
    }[step.channel]
    since = "the trigger" if step.delay_from == Step.DelayFrom.TRIGGER else "the previous step"
    return f"Step {step.position + 1}, {duration(step.delay_minutes)} after {since}: {action}."


def campaign_in_words(campaign: Campaign) -> list[str]:
    sentences = [who_enters(campaign)]
    if audience := only_if(campaign.audience_conditions or {}):
        sentences.append(audience)
    steps = campaign.steps.select_related("template", "audience").prefetch_related(
        "variants__template"
    )
    sentences += [step_in_words(step) for step in steps] or ["No steps yet: add one below."]
    stops = f"Stops for a person when they do “{campaign.goal_event}”, or after the last step"
    if campaign.inactivity_minutes:
        stops += (
            f". The first step waits until they have been inactive for "
            f"{duration(campaign.inactivity_minutes)}"
        )
    sentences.append(stops + ".")
    if campaign.holdout_percent:
        sentences.append(
            f"{campaign.holdout_percent} % of those who enter get nothing (the holdout), "
            "so the report can show what the campaign adds."
        )
    else:
        sentences.append("No holdout: everyone gets the campaign, so its lift cannot be measured.")
    if campaign.email_cap_count is not None and campaign.email_cap_days:
        sentences.append(
            f"At most {campaign.email_cap_count} email(s) from this campaign per person in "
            f"{duration(campaign.email_cap_days * 1440)}."
        )
    return sentences
