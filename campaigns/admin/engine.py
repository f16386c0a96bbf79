"""Admin for campaigns, their steps, enrollments and decisions (the engine's side).

Functional, not polished: the workspace issue restyles it. Every change of
state goes through the same checks as the forms (`campaigns.engine.forms`).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from campaigns.engine.describe import campaign_in_words
from campaigns.engine.duplicate import duplicate_campaign
from campaigns.engine.forms import CampaignForm, StepForm, StepInlineFormSet, campaign_problems
from campaigns.models import Campaign, Decision, Enrollment, SitePolicy, Step
from campaigns.reports.charts import SERIES, daily_chart, funnel_chart
from campaigns.reports.snapshots import page_report
from reengage.admin_paging import LargeTablePaginator
from tracking.models import Profile, Site


class StepInline(admin.TabularInline):
    model = Step
    form = StepForm
    formset = StepInlineFormSet
    extra = 0
    ordering = ["position"]
    verbose_name = "step"
    verbose_name_plural = "steps (in order; a three-step flow is e.g. 60 min, 1440 min, 4320 min)"


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    inlines = [StepInline]
    # The report link next to the name, and no more columns than a 1280-px laptop
    # shows beside the sidebar and the filters: the site only when there are several
    # (the priority orders the list and is on each campaign's page).
    list_display = [
        "name", "report_link", "status", "trigger_event", "goal_event", "holdout",
        "active_enrollments", "site",
    ]  # fmt: skip
    list_filter = ["status", "site"]
    search_fields = ["name", "trigger_event"]
    actions = ["activate", "pause", "end", "duplicate"]
    readonly_fields = ["in_words"]
    fieldsets = [
        (None, {"fields": ["site", "name", "status", "priority", ("starts_at", "ends_at")]}),
        (
            "Who enters",
            {
                "fields": [
                    "trigger_event",
                    "trigger_conditions",
                    "audience_conditions",
                    "reentry_cooldown_hours",
                ]
            },
        ),
        ("When it stops", {"fields": ["goal_event", "inactivity_minutes"]}),
        (
            "Measuring and limits",
            {"fields": ["holdout_percent", ("email_cap_count", "email_cap_days")]},
        ),
    ]

    def get_queryset(self, request):
        # A subquery per campaign counts through the one-active-per-campaign index;
        # a join grouped by campaign would read every enrollment of every campaign.
        active = (
            Enrollment.objects.filter(campaign=OuterRef("pk"), status=Enrollment.Status.ACTIVE)
            .order_by()
            .values("campaign")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(_active=Coalesce(Subquery(active), 0))

    def get_list_display(self, request):
        if Site.objects.order_by()[:2].count() < 2:
            return [name for name in self.list_display if name != "site"]
        return self.list_display

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return [("This campaign, in words", {"fields": ["in_words"]}), *fieldsets]

    @admin.display(description="as saved")
    def in_words(self, campaign: Campaign) -> str:
        return format_html(
            '<ul class="in-words">{}</ul>',
            format_html_join("", "<li>{}</li>", ((s,) for s in campaign_in_words(campaign))),
        )

    @admin.display(description="holdout", ordering="holdout_percent")
    def holdout(self, campaign: Campaign) -> str:
        return f"{campaign.holdout_percent} %"

    @admin.display(description="in it now", ordering="_active")
    def active_enrollments(self, campaign: Campaign) -> int:
        return campaign._active

    @admin.display(description="report")
    def report_link(self, campaign: Campaign) -> str:
        url = reverse("admin:campaigns_campaign_report", args=[campaign.pk])
        return format_html('<a href="{}">Report</a>', url)

    def get_urls(self):
        own = [
            path("<int:pk>/report/", self.admin_site.admin_view(self.report_view),
                 name="campaigns_campaign_report"),
            path("<int:pk>/duplicate/", self.admin_site.admin_view(require_POST(self.duplicate_view)),
                 name="campaigns_campaign_duplicate"),
        ]  # fmt: skip
        return own + super().get_urls()

    def report_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = get_object_or_404(Campaign.objects.select_related("site"), pk=pk)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        report, computed_at = page_report(campaign, now=timezone.now())
        context = {
            **self.admin_site.each_context(request),
            "title": f"Report: {campaign}",
            "opts": self.model._meta,
            "original": campaign,
            "report": report,
            "computed_at": computed_at,
            "snapshot_minutes": settings.REPORT_SNAPSHOT_SECONDS // 60,
            "daily": daily_chart(report.days),
            "series": SERIES,
            "funnel": funnel_chart(report.funnel),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/report.html", context)

    def duplicate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The change page's "Duplicate" button: open the new draft."""
        campaign = get_object_or_404(Campaign, pk=pk)
        if not (self.has_add_permission(request) and self.has_view_permission(request, campaign)):
            raise PermissionDenied
        copy = self._duplicate(request, campaign)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[copy.pk]))

    def _duplicate(self, request: HttpRequest, campaign: Campaign) -> Campaign:
        copy = duplicate_campaign(campaign)
        self.log_addition(request, copy, [{"added": {}}])
        self.message_user(
            request,
            f"“{campaign}” duplicated as the draft “{copy}”: change what differs, then activate it.",
            messages.SUCCESS,
        )
        return copy

    @admin.action(description="Duplicate selected campaigns (as drafts)", permissions=["add"])
    def duplicate(self, request, queryset):
        for campaign in queryset:
            self._duplicate(request, campaign)

    @admin.action(description="Activate selected campaigns")
    def activate(self, request, queryset):
        for campaign in queryset:
            problems = campaign_problems(campaign)
            if problems:
                self.message_user(
                    request,
                    f"“{campaign}” was not activated: " + " ".join(problems),
                    messages.ERROR,
                )
                continue
            Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.ACTIVE)
            self.message_user(request, f"“{campaign}” is active.", messages.SUCCESS)

    @admin.action(description="Pause selected campaigns (enrollments wait, nobody new enters)")
    def pause(self, request, queryset):
        n = queryset.filter(status=Campaign.Status.ACTIVE).update(status=Campaign.Status.PAUSED)
        self.message_user(request, f"{n} campaign(s) paused.", messages.SUCCESS)

    @admin.action(description="End selected campaigns (current enrollments exit)")
    def end(self, request, queryset):
        n = queryset.exclude(status=Campaign.Status.ENDED).update(status=Campaign.Status.ENDED)
        self.message_user(request, f"{n} campaign(s) ended.", messages.SUCCESS)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        campaign = form.instance
        if campaign.status == Campaign.Status.ACTIVE:
            problems = campaign_problems(campaign)
            if problems:
                Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.DRAFT)
                self.message_user(
                    request,
                    "Saved as a draft, not active: " + " ".join(problems),
                    messages.WARNING,
                )


def step_number(position: int | None) -> int | None:
    """Steps are numbered from 1 on every screen; the stored position counts from 0."""
    return None if position is None else position + 1


class DecisionInline(admin.TabularInline):
    model = Decision
    fields = ["decided_at", "step_number", "outcome", "reason_text", "rescheduled_to"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["decided_at", "id"]
    verbose_name_plural = "timeline"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="why")
    def reason_text(self, decision: Decision) -> str:
        return Decision.REASONS.get(decision.reason, decision.reason)

    @admin.display(description="step")
    def step_number(self, decision: Decision) -> int | None:
        return step_number(decision.position)


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = ["profile", "campaign", "status", "is_holdout", "next_step", "due_at",
                    "enrolled_at", "exit_reason"]  # fmt: skip
    list_filter = ["status", "is_holdout", "campaign"]
    list_select_related = ["profile", "campaign"]
    search_fields = ["profile__email"]
    search_help_text = "The person's exact email address (any case)."
    inlines = [DecisionInline]
    readonly_fields = [
        "next_step" if f.name == "next_position" else f.name for f in Enrollment._meta.fields
    ]
    exclude = ["next_position"]
    show_full_result_count = False
    paginator = LargeTablePaginator

    def get_search_results(self, request, queryset, search_term):
        """Exact addresses, through the profiles' Upper(email) index (a substring
        match would join and scan every enrollment)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        people = Profile.objects.filter(email__iexact=term).values("pk")
        return queryset.filter(profile__in=people), False

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="next step", ordering="next_position")
    def next_step(self, enrollment: Enrollment) -> int | None:
        return step_number(enrollment.next_position)


class DecisionReason(admin.SimpleListFilter):
    """The reasons in words, from Decision.REASONS: the admin's default filter would
    read the whole decision log for the distinct values."""

    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return list(Decision.REASONS.items())

    def queryset(self, request, queryset):
        return queryset.filter(reason=self.value()) if self.value() else queryset


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ["decided_at", "campaign", "profile", "step_number", "outcome", "reason_text"]
    list_filter = ["outcome", DecisionReason, "campaign"]
    list_select_related = ["campaign", "profile"]
    readonly_fields = [
        "step_number" if f.name == "position" else f.name for f in Decision._meta.fields
    ]
    exclude = ["position"]
    # Newest first by id (the order they were made in), through the primary key: the
    # model's (decided_at, id) order would sort the whole log for every page.
    ordering = ["-id"]
    show_full_result_count = False
    paginator = LargeTablePaginator

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="step", ordering="position")
    def step_number(self, decision: Decision) -> int | None:
        return step_number(decision.position)

    @admin.display(description="why")
    def reason_text(self, decision: Decision) -> str:
        return Decision.REASONS.get(decision.reason, decision.reason)


@admin.register(SitePolicy)
class SitePolicyAdmin(admin.ModelAdmin):
    list_display = ["site", "email_cap_count", "email_cap_days", "over_cap_action",
                    "quiet_hours_enabled", "quiet_hours_start", "quiet_hours_end"]  # fmt: skip
