"""Campaign and step validation for the admin: clear errors in the marketer's words.

`campaign_problems()` is the check an activation runs (admin action and form):
a campaign that passes it can run without surprising anyone.
"""

from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError

from campaigns.engine.conditions import ConditionError, validate_audience, validate_conditions
from campaigns.models import Campaign, Step

CAN_EMAIL = (Step.Channel.EMAIL_ELSE_RETARGET, Step.Channel.EMAIL_ONLY)
CAN_RETARGET = (Step.Channel.EMAIL_ELSE_RETARGET, Step.Channel.RETARGET_ONLY)


def step_problems(step: Step, site_id: int | None) -> dict[str, str]:
    """Field → message for one step (empty when it is fine)."""
    problems: dict[str, str] = {}
    if step.channel in CAN_EMAIL and step.template_id is None:
        problems["template"] = (
            "This step can send an email: choose its template (or make it Retarget only)."
        )
    if step.channel in CAN_RETARGET and step.audience_id is None:
        problems["audience"] = (
            "This step can retarget: choose the audience people join (or make it Email only)."
        )
    if site_id is not None and step.template_id is not None and step.template.site_id != site_id:
        problems["template"] = f"The template “{step.template}” belongs to another site."
    if site_id is not None and step.audience_id is not None and step.audience.site_id != site_id:
        problems["audience"] = f"The audience “{step.audience}” belongs to another site."
    return problems


def campaign_problems(campaign: Campaign) -> list[str]:
    """What stops this campaign from being activated, as sentences."""
    problems = []
    steps = list(campaign.steps.select_related("template", "audience"))
    if not steps:
        problems.append("It has no steps: add at least one (e.g. an email 60 minutes after).")
    for step in steps:
        for message in step_problems(step, campaign.site_id).values():
            problems.append(f"Step {step.position + 1}: {message}")
    if campaign.goal_event.strip() == campaign.trigger_event.strip():
        problems.append("The goal is the same event as the trigger.")
    return problems


class JSONTextField(forms.JSONField):
    """A JSON field shown as readable, indented text."""

    def prepare_value(self, value):
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class CampaignForm(forms.ModelForm):
    trigger_conditions = JSONTextField(
        required=False,
        initial=list,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text='Optional, all must hold: [{"property": "value", "op": ">=", "value": 50}, '
        '{"property": "url", "op": "contains", "value": "/pricing"}]. Operators: = != > >= < <= '
        "contains, not contains, exists.",
    )
    audience_conditions = JSONTextField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text='Optional: {"email": "verified" | "unverified" | "any", "visitor": "new" | '
        '"returning" | "any", "stage": "browse" | "cart" | "checkout" | "any", '
        '"traits": [{"trait": "plan", "op": "=", "value": "pro"}]}',
    )

    class Meta:
        model = Campaign
        fields = [
            "site", "name", "status", "priority", "starts_at", "ends_at", "trigger_event",
            "trigger_conditions", "audience_conditions", "reentry_cooldown_hours", "goal_event",
            "inactivity_minutes", "holdout_percent", "email_cap_count", "email_cap_days",
        ]  # fmt: skip
        labels = {
            "trigger_event": "Trigger: when a visitor does",
            "goal_event": "Goal: stop when they do",
            "inactivity_minutes": "Wait for inactivity (minutes)",
            "reentry_cooldown_hours": "Re-entry cooldown (hours)",
            "holdout_percent": "Holdout (%)",
            "email_cap_count": "Campaign cap: at most this many emails",
            "email_cap_days": "…per this many days",
        }

    def clean_trigger_conditions(self):
        value = self.cleaned_data.get("trigger_conditions") or []
        try:
            return validate_conditions(value)
        except ConditionError as exc:
            raise ValidationError(str(exc)) from None

    def clean_audience_conditions(self):
        value = self.cleaned_data.get("audience_conditions") or {}
        try:
            return validate_audience(value)
        except ConditionError as exc:
            raise ValidationError(str(exc)) from None

    def clean_holdout_percent(self):
        value = self.cleaned_data.get("holdout_percent")
        if value is not None and value > 50:
            raise ValidationError(
                "A holdout over 50 % would leave most visitors without a message; use 0–50."
            )
        return value

    def clean(self):
        cleaned = super().clean()
        trigger = (cleaned.get("trigger_event") or "").strip()
        goal = (cleaned.get("goal_event") or "").strip()
        if trigger and goal and trigger == goal:
            self.add_error(
                "goal_event",
                "The goal cannot be the trigger: every enrollment would end the moment it "
                "starts. Use the conversion, e.g. Order Completed.",
            )
        starts, ends = cleaned.get("starts_at"), cleaned.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", "The end must be after the start.")
        count, days = cleaned.get("email_cap_count"), cleaned.get("email_cap_days")
        if (count is None) != (days is None):
            self.add_error(
                "email_cap_days" if days is None else "email_cap_count",
                "Set both numbers of the campaign cap (N emails per D days), or neither.",
            )
        if days == 0:
            self.add_error("email_cap_days", "The cap period is at least one day.")
        return cleaned


class StepForm(forms.ModelForm):
    # Marketers number steps from 1, as the timeline, the outbox and the report do;
    # the stored position counts from 0 (cleaned_data["position"] is the stored one).
    position = forms.IntegerField(
        label="Step",
        min_value=1,
        help_text="1 for the first step, 2 for the next, …",
        # The admin's narrow number box, as the model field would have had.
        widget=forms.NumberInput(attrs={"class": "vIntegerField"}),
    )

    class Meta:
        model = Step
        fields = ["position", "delay_minutes", "delay_from", "channel", "template", "audience"]
        labels = {"delay_minutes": "Wait (minutes)", "delay_from": "counted"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["position"] = self.instance.position + 1

    def clean_position(self) -> int:
        return self.cleaned_data["position"] - 1

    def clean(self):
        cleaned = super().clean()
        step = Step(
            channel=cleaned.get("channel") or Step.Channel.EMAIL_ELSE_RETARGET,
            template=cleaned.get("template"),
            audience=cleaned.get("audience"),
        )
        site_id = self.instance.campaign.site_id if self.instance.campaign_id else None
        site = getattr(self, "parent_site_id", None) or site_id
        for field, message in step_problems(step, site).items():
            self.add_error(field, message)
        return cleaned


class StepInlineFormSet(forms.BaseInlineFormSet):
    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        # The campaign's site as edited in this same request (it may have changed).
        form.parent_site_id = getattr(self.instance, "site_id", None)
        return form

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        kept = [
            form
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE", False)
        ]
        positions = [form.cleaned_data.get("position") for form in kept]
        if len(positions) != len(set(positions)):
            raise ValidationError("Two steps have the same number; number them 1, 2, 3, …")
        if not kept and self.instance.status == Campaign.Status.ACTIVE:
            raise ValidationError(
                "An active campaign needs at least one step. Add one, or save it as a draft."
            )
