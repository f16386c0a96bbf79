"""The pure rules (campaigns/engine/rules.py) import no models, so they spell the
models' choice values as constants: these tests keep the two lists the same."""

import re
from pathlib import Path

from campaigns.engine import rules
from campaigns.models import Decision, SitePolicy, Step


def test_the_rules_outcomes_are_the_decision_outcomes():
    outcomes = {rules.EMAIL, rules.RETARGET, rules.NOTHING, rules.EXIT, rules.CONTROL,
                rules.RESCHEDULED}  # fmt: skip
    assert outcomes == set(Decision.Outcome.values)


def test_the_rules_channels_are_the_step_channels():
    channels = {rules.EMAIL_ELSE_RETARGET, rules.EMAIL_ONLY, rules.RETARGET_ONLY}
    assert channels == set(Step.Channel.values)


def test_the_rules_cap_actions_are_the_site_policy_cap_actions():
    assert {rules.RESCHEDULE, rules.SKIP} == set(SitePolicy.CapAction.values)


def test_every_reason_the_rules_write_has_words_for_the_marketer():
    source = Path(rules.__file__).read_text()
    # Reasons are literals handed to _advance/_exit, or returned by the blockers
    # ("retarget_only" is the blocker's marker for a retarget-only step, not a reason).
    written = set(re.findall(r'_(?:advance|exit)\(facts, (?:now, \w+, )?"(\w+)"', source))
    written |= set(re.findall(r'return "(\w+)"', source)) - {rules.RETARGET_ONLY}
    assert {"holdout", "converted", "no_verified_email", "gpc"} <= written, "pattern broke"
    assert written <= set(Decision.REASONS), written - set(Decision.REASONS)
