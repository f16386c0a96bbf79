"""Admin for audiences: rules, on-site tags, exports, destinations and their deliveries."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, Q
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import now as tz_now
from django.views.decorators.http import require_POST

from campaigns.audiences import delivery, exports
from campaigns.audiences.history import member_history, members_now
from campaigns.models import Audience, AudienceMember, AudienceRule, Delivery, Destination
from campaigns.reports.charts import members_chart
from reengage import outbound
from reengage.admin_paging import LargeTablePaginator

CHART_DAYS = 90


class AudienceRuleInline(admin.StackedInline):
    model = AudienceRule
    extra = 0
    max_num = 1
    readonly_fields = ["last_evaluated_at"]


HTTPS_URLS = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Audience)
class AudienceAdmin(admin.ModelAdmin):
    formfield_overrides = HTTPS_URLS
    list_display = ["name", "site", "members", "lifetime_days", "include_hashed_emails",
                    "tag_type"]  # fmt: skip
    list_filter = ["site"]
    search_fields = ["name"]
    inlines = [AudienceRuleInline]
    readonly_fields = ["exports", "members_over_time"]
    fieldsets = [
        (None, {"fields": ["site", "name", "lifetime_days", "remove_on_conversion"]}),
        ("Members", {"fields": ["members_over_time"]}),
        ("Ad platforms", {"fields": ["include_hashed_emails", "exports"]}),
        ("On-site tag (fired by tags.js for members, once per session)",
         {"fields": ["tag_type", "tag_url", "tag_event"]}),
    ]  # fmt: skip

    class Media:
        css = {"all": ["campaigns/report.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=members_now())

    @admin.display(description="members now", ordering="_members")
    def members(self, obj: Audience) -> int:
        return obj._members

    @admin.display(description="members over time")
    def members_over_time(self, obj: Audience) -> str:
        if not obj.pk:
            return "Save the audience first."
        history = member_history(obj.pk, now=tz_now(), days=CHART_DAYS)
        context = {"audience": obj, "chart": members_chart(history), "history": history,
                   "days": CHART_DAYS}  # fmt: skip
        return mark_safe(render_to_string("admin/campaigns/audience/members_chart.html", context))  # noqa: S308 (escaped by the template)

    @admin.display(description="Download")
    def exports(self, obj: Audience) -> str:
        if not obj.pk:
            return "Save the audience first."
        labels = {
            "meta": "Meta customer file (CSV)",
            "google": "Google Customer Match (CSV)",
            "csv": "Anonymous IDs with hashes (CSV)",
            "json": "Anonymous IDs with hashes (JSON)",
        }
        return format_html_join(
            " · ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:campaigns_audience_export", args=[obj.pk, name]), label)
                for name, label in labels.items()
            ),
        )

    def get_urls(self):
        return [
            path(
                "<int:audience_id>/export/<str:format_name>/",
                self.admin_site.admin_view(self.export_view),
                name="campaigns_audience_export",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request, audience_id: int, format_name: str):
        audience = get_object_or_404(Audience, pk=audience_id)
        if not self.has_view_permission(request, audience):
            raise PermissionDenied
        if format_name not in exports.FORMATS:
            raise Http404(f"no export format {format_name!r}")
        return exports.streaming_response(audience, format_name)


class AddedBy(admin.SimpleListFilter):
    """What added the members, from a fixed list: the admin's default filter would
    read every member row for the distinct values."""

    title = "added by"
    parameter_name = "added_by"

    def lookups(self, request, model_admin):
        return [("campaign", "a campaign step"), ("rule", "the audience's rule")]

    def queryset(self, request, queryset):
        return queryset.filter(added_by=self.value()) if self.value() else queryset


@admin.register(AudienceMember)
class AudienceMemberAdmin(admin.ModelAdmin):
    """Read-only: members change through campaigns, rules, expiry and erasure only."""

    list_display = ["id", "audience", "profile", "cookie_ids", "added_by", "added_at",
                    "expires_at", "removed_at", "removal_reason"]  # fmt: skip
    list_filter = ["audience", "removal_reason", AddedBy]
    list_select_related = ["audience", "profile"]
    show_full_result_count = False
    paginator = LargeTablePaginator

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("profile__visitors")

    @admin.display(description="cookie IDs")
    def cookie_ids(self, member: AudienceMember) -> str:
        # What ad platforms match on for anonymous members (their profile has no email).
        return ", ".join(visitor.anonymous_id for visitor in member.profile.visitors.all()) or "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class DestinationForm(forms.ModelForm):
    class Meta:
        model = Destination
        fields = ["audience", "name", "url", "enabled"]

        @staticmethod
        def formfield_callback(field, **kwargs):
            if isinstance(field, models.URLField):
                kwargs.setdefault("assume_scheme", "https")
            return field.formfield(**kwargs)

    def clean_url(self) -> str:
        """The same rules the sender applies (reengage.outbound), as a form error now
        rather than a failed delivery later. A name that does not resolve from here is
        accepted (the sender checks again, at every request)."""
        url = self.cleaned_data.get("url", "")
        if url:
            try:
                outbound.check_url(url, resolve_name=False)
                outbound.check_url(url)
            except outbound.OutboundRefused as exc:
                if "does not resolve" not in str(exc):
                    raise forms.ValidationError(
                        f"This webhook URL is not allowed: {exc}."
                    ) from None
        return url


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    form = DestinationForm
    formfield_overrides = HTTPS_URLS
    list_display = ["name", "audience", "url", "enabled", "pending", "dead"]
    list_filter = ["enabled", "audience"]
    readonly_fields = ["signing_secret_shown", "token_shown", "last_change_id", "created_at"]
    exclude = ["signing_secret_encrypted"]

    @admin.display(description="signing secret")
    def signing_secret_shown(self, obj) -> str:
        # Shown in full once, in the message after adding the destination or rotating
        # the secret; stored encrypted. Marketers cannot open destinations at all.
        if not obj.pk:
            return "created when the destination is saved, and shown once"
        expires = obj.previous_signing_secret_expires_at
        overlap = (
            f" (the previous secret also signs until {expires:%Y-%m-%d %H:%M} UTC)"
            if expires and expires > tz_now()
            else ""
        )
        return f"{obj.signing_secret_hint}{overlap}"

    @admin.display(description="pull-API token")
    def token_shown(self, obj) -> str:
        if not obj.token_hint:
            return "none (use the action “Rotate the read-only API token”)"
        expires = obj.previous_token_expires_at
        overlap = (
            f" (the previous token also reads until {expires:%Y-%m-%d %H:%M} UTC)"
            if obj.previous_token_hash and expires and expires > tz_now()
            else ""
        )
        return f"{obj.token_hint}…{overlap}"

    actions = ["send_test", "issue_token", "rotate_signing_secret", "revoke_tokens"]

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(
            request,
            f"{obj}: signing secret {obj.signing_secret} — configure the receiver with it "
            "now, it is not shown again.",
            messages.WARNING,
        )
        return super().response_add(request, obj, post_url_continue)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("audience")
            .annotate(
                n_pending=Count("deliveries", filter=Q(deliveries__status="pending")),
                n_dead=Count("deliveries", filter=Q(deliveries__status="dead")),
            )
        )

    @admin.display(description="pending batches", ordering="n_pending")
    def pending(self, obj) -> int:
        return obj.n_pending

    @admin.display(description="dead batches", ordering="n_dead")
    def dead(self, obj) -> str:
        if not obj.n_dead:
            return "0"
        url = reverse("admin:campaigns_delivery_changelist")
        return format_html(
            '<a href="{}?destination__id__exact={}&status__exact=dead">{}</a>',
            url, obj.pk, obj.n_dead,
        )  # fmt: skip

    def get_urls(self):
        return [
            path(
                "<int:destination_id>/send-test/",
                self.admin_site.admin_view(require_POST(self.send_test_view)),
                name="campaigns_destination_send_test",
            ),
            *super().get_urls(),
        ]

    def send_test_view(self, request, destination_id: int):
        """The change page's "Send test" button."""
        destination = get_object_or_404(Destination.objects.select_related("audience"),
                                        pk=destination_id)  # fmt: skip
        if not self.has_change_permission(request, destination):
            raise PermissionDenied
        self._send_test(request, destination)
        return HttpResponseRedirect(
            reverse("admin:campaigns_destination_change", args=[destination.pk])
        )

    def _send_test(self, request, destination: Destination) -> None:
        if not destination.url:
            self.message_user(request, f"{destination}: no webhook URL", messages.WARNING)
            return
        outcome = delivery.send_test(destination, now=tz_now())
        if outcome.ok:
            self.message_user(request, f"{destination}: answered {outcome.status_code}")
        else:
            self.message_user(request, f"{destination}: failed ({outcome.error})", messages.ERROR)

    @admin.action(description="Send a signed test message to the selected webhooks")
    def send_test(self, request, queryset) -> None:
        for destination in queryset.select_related("audience"):
            self._send_test(request, destination)

    @admin.action(description="Rotate the read-only API token (the old one reads 24 more hours)")
    def issue_token(self, request, queryset) -> None:
        for destination in queryset:
            token = destination.issue_token(now=tz_now())
            self.message_user(
                request,
                f"{destination}: new token {token} — copy it now, it is not shown again.",
                messages.WARNING,
            )

    @admin.action(description="Rotate the webhook signing secret (the old one signs 24 more hours)")
    def rotate_signing_secret(self, request, queryset) -> None:
        for destination in queryset:
            secret = destination.rotate_signing_secret(now=tz_now())
            self.message_user(
                request,
                f"{destination}: new signing secret {secret} — configure the receiver with it "
                "now, it is not shown again.",
                messages.WARNING,
            )

    @admin.action(description="Revoke the API tokens now (a leaked token: no overlap)")
    def revoke_tokens(self, request, queryset) -> None:
        for destination in queryset:
            destination.revoke_tokens()
        self.message_user(request, f"Revoked the API tokens of {queryset.count()} destination(s).")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["webhook_id", "destination", "status", "attempts", "batch_size",
                    "next_attempt_at", "last_status_code", "last_error", "delivered_at"]  # fmt: skip
    list_filter = ["status", "destination"]
    list_select_related = ["destination"]
    search_fields = ["webhook_id"]
    actions = ["retry"]
    show_full_result_count = False
    paginator = LargeTablePaginator

    @admin.display(description="changes")
    def batch_size(self, obj) -> int:
        return len(obj.change_ids)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("campaigns.change_delivery")

    @admin.action(description="Retry the selected dead deliveries now", permissions=["retry"])
    def retry(self, request, queryset) -> None:
        count = delivery.retry_dead(list(queryset.values_list("id", flat=True)), now=tz_now())
        self.message_user(request, f"{count} dead deliveries will be retried.")
