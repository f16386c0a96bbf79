"""Admin for audiences: rules, on-site tags, exports, destinations and their deliveries."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import now as tz_now
from django.views.decorators.http import require_POST

from campaigns import audiences
from campaigns.audiences import delivery, exports
from campaigns.audiences.history import member_history, members_now
from campaigns.audiences.platforms import outbox as platform_outbox
from campaigns.audiences.platforms.google import parse_service_account
from campaigns.models import (
    Audience,
    AudienceChange,
    AudienceMember,
    AudienceRule,
    Delivery,
    Destination,
    PlatformBatch,
    PlatformDestination,
    PlatformInboxEntry,
)
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
    readonly_fields = ["exports", "members_over_time", "platform_reach"]
    fieldsets = [
        (None, {"fields": ["site", "name", "lifetime_days", "remove_on_conversion"]}),
        ("Members", {"fields": ["members_over_time"]}),
        ("Ad platforms", {"fields": ["platform_reach", "include_hashed_emails", "exports"]}),
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

    @admin.display(description="reach on ad platforms")
    def platform_reach(self, obj: Audience) -> str:
        if not obj.pk:
            return "Save the audience first."
        reach = audiences.audience_reach(obj.pk)
        return format_html(
            '<p class="reach">{}</p><table class="reach"><tr><th>Current members</th><td>{}</td></tr>'
            "<tr><th>Meta can match (Meta cookie or click id)</th><td>{}</td></tr>"
            "<tr><th>Google can match (Analytics cookie or click id)</th><td>{}</td></tr>"
            "<tr><th>With a hashed email</th><td>{}</td></tr></table>",
            reach.sentence(), reach.members, reach.meta, reach.google, reach.hashed_email,
        )  # fmt: skip

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


class OutboxAdmin(admin.ModelAdmin):
    """A read-only outbox of batches (webhook deliveries, ad-platform batches) whose dead
    rows can be retried: subclasses name the function that retries and what a row is."""

    list_filter = ["status", "destination"]
    list_select_related = ["destination"]
    actions = ["retry"]
    show_full_result_count = False
    paginator = LargeTablePaginator
    row_words = "rows"

    @staticmethod
    def retry_dead(ids: list[int], *, now) -> int:
        raise NotImplementedError

    @admin.display(description="changes")
    def batch_size(self, obj) -> int:
        return len(obj.change_ids)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm(f"campaigns.change_{self.model._meta.model_name}")

    @admin.action(description="Retry the selected dead ones now", permissions=["retry"])
    def retry(self, request, queryset) -> None:
        count = self.retry_dead(list(queryset.values_list("id", flat=True)), now=tz_now())
        self.message_user(request, f"{count} dead {self.row_words} will be retried.")


@admin.register(Delivery)
class DeliveryAdmin(OutboxAdmin):
    list_display = ["webhook_id", "destination", "status", "attempts", "batch_size",
                    "next_attempt_at", "last_status_code", "last_error", "delivered_at"]  # fmt: skip
    search_fields = ["webhook_id"]
    retry_dead = staticmethod(delivery.retry_dead)
    row_words = "deliveries"


# --- ad-platform destinations (campaigns.audiences.platforms) ---------------------------


class PlatformDestinationForm(forms.ModelForm):
    credential_input = forms.CharField(
        label="Credentials",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text="Meta: a system-user access token. GA4: the Measurement Protocol API "
        "secret. Google: the service-account key file (JSON) or an OAuth access token. "
        "Stored encrypted and never shown again; leave blank to keep the current one. "
        "With none, nothing leaves this server: the dev ad-platform inbox shows what "
        "would have been sent.",
    )

    class Meta:
        model = PlatformDestination
        fields = ["audience", "name", "kind", "enabled", "pixel_id", "custom_audience_id",
                  "test_event_code", "google_account_type", "google_operating_account_id",
                  "google_login_account_id", "google_audience_id", "google_terms_accepted",
                  "measurement_id", "join_event", "leave_event"]  # fmt: skip

    def clean_credential_input(self) -> str:
        value = self.cleaned_data["credential_input"]
        kind = self.cleaned_data.get("kind") or getattr(self.instance, "kind", "")
        if value and kind == PlatformDestination.Kind.GOOGLE_AUDIENCE and value.startswith("{"):
            try:
                parse_service_account(value)
            except ValueError as exc:
                raise forms.ValidationError(f"Service-account key: {exc}") from None
        if len(value) > 20_000:
            raise forms.ValidationError("at most 20,000 characters")
        return value


@admin.register(PlatformDestination)
class PlatformDestinationAdmin(admin.ModelAdmin):
    form = PlatformDestinationForm
    list_display = ["name", "audience", "kind", "enabled", "mode", "last_success_at",
                    "error_shown", "backlog", "dead"]  # fmt: skip
    list_filter = ["kind", "enabled"]
    list_select_related = ["audience"]
    readonly_fields = ["credential_shown", "status", "last_change_id", "last_success_at",
                       "last_error_at", "last_error", "created_at"]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["audience", "name", "kind", "enabled"]}),
        ("Meta", {"fields": ["pixel_id", "custom_audience_id", "test_event_code"]}),
        ("Google Data Manager API", {"fields": [
            "google_account_type", "google_operating_account_id", "google_login_account_id",
            "google_audience_id", "google_terms_accepted"]}),
        ("GA4", {"fields": ["measurement_id"]}),
        ("Event names (Meta pixel events and GA4; blank: reengage_join_/leave_<audience>)",
         {"fields": ["join_event", "leave_event"]}),
        ("Credentials", {"fields": ["credential_input", "credential_shown"]}),
        ("Status", {"fields": ["status", "last_success_at", "last_error_at", "last_error",
                               "last_change_id", "created_at"]}),
    ]  # fmt: skip
    actions = ["send_test"]

    def get_queryset(self, request):
        unbatched = (
            AudienceChange.objects.filter(
                audience_id=OuterRef("audience_id"), id__gt=OuterRef("last_change_id")
            )
            .order_by()
            .values("audience_id")
            .annotate(n=Count("id"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_unbatched=Coalesce(Subquery(unbatched), 0),
                n_pending=Count("batches", filter=Q(batches__status="pending")),
                n_dead=Count("batches", filter=Q(batches__status="dead")),
            )
        )

    def save_model(self, request, obj, form, change) -> None:
        value = form.cleaned_data.get("credential_input")
        if value:
            obj.credential = value
        super().save_model(request, obj, form, change)
        if value:
            self.message_user(
                request,
                f"{obj}: credentials saved ({obj.credential_hint or 'hidden'}), stored "
                "encrypted; they are not shown again.",
                messages.SUCCESS,
            )

    @admin.display(description="credentials")
    def credential_shown(self, obj) -> str:
        if not obj.credential_encrypted:
            return "none: the dev ad-platform inbox records what would be sent"
        return f"set ({obj.credential_hint or 'hidden'}), encrypted at rest"

    @admin.display(description="sends")
    def mode(self, obj) -> str:
        return "to the dev inbox" if obj.uses_dev_inbox else "to the platform"

    @admin.display(description="last error")
    def error_shown(self, obj) -> str:
        if not obj.last_error_at or (
            obj.last_success_at and obj.last_success_at > obj.last_error_at
        ):
            return "—"
        return f"{obj.last_error_at:%Y-%m-%d %H:%M}: {obj.last_error[:160]}"

    @admin.display(description="backlog (changes, batches)")
    def backlog(self, obj) -> str:
        return f"{obj.n_unbatched} not batched, {obj.n_pending} batches pending"

    @admin.display(description="dead batches", ordering="n_dead")
    def dead(self, obj) -> str:
        if not obj.n_dead:
            return "0"
        url = reverse("admin:campaigns_platformbatch_changelist")
        return format_html('<a href="{}?destination__id__exact={}&status__exact=dead">{}</a>',
                           url, obj.pk, obj.n_dead)  # fmt: skip

    @admin.display(description="status")
    def status(self, obj) -> str:
        if not obj.pk:
            return "Save the destination first."
        batches = obj.batches.order_by("-id")[:10]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((b.id, b.get_status_display(), len(b.change_ids), b.attempts,
              b.last_status_code or "—", b.last_error[:200] or "—") for b in batches),
        )  # fmt: skip
        remembered = obj.members.count()
        return format_html(
            "<p>Sends {}; {} members remembered for their leave.</p>"
            "<table><tr><th>batch</th><th>status</th><th>changes</th><th>attempts</th>"
            "<th>last answer</th><th>last error</th></tr>{}</table>",
            self.mode(obj), remembered, rows,
        )  # fmt: skip

    @admin.action(description="Send a test request to the selected ad platforms")
    def send_test(self, request, queryset) -> None:
        for destination in queryset.select_related("audience__site"):
            outcome = platform_outbox.send_test(destination, now=tz_now())
            if outcome.ok:
                self.message_user(request, f"{destination}: test OK "
                                           f"({outcome.error or outcome.status})")  # fmt: skip
            else:
                self.message_user(
                    request,
                    f"{destination}: test failed (HTTP {outcome.status}): {outcome.error}",
                    messages.ERROR,
                )


@admin.register(PlatformBatch)
class PlatformBatchAdmin(OutboxAdmin):
    list_display = ["id", "destination", "status", "action", "batch_size", "attempts",
                    "next_attempt_at", "last_status_code", "last_error", "sent", "skipped",
                    "delivered_at"]  # fmt: skip
    retry_dead = staticmethod(platform_outbox.retry_dead)
    row_words = "batches"


@admin.register(PlatformInboxEntry)
class PlatformInboxEntryAdmin(admin.ModelAdmin):
    """The dev ad-platform inbox: what destinations without credentials would have sent."""

    list_display = ["created_at", "destination", "method", "endpoint", "items"]
    list_filter = ["destination"]
    list_select_related = ["destination"]
    fields = ["created_at", "destination", "batch", "method", "endpoint", "items",
              "payload_shown"]  # fmt: skip
    readonly_fields = fields
    show_full_result_count = False
    paginator = LargeTablePaginator

    @admin.display(description="payload (hashed identifiers as sent)")
    def payload_shown(self, obj) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
