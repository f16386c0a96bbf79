"""Admin for email: templates (preview, send a test), outbox, suppressions, dev mailbox,
A/B variants with their results, promo code pools with CSV import."""

from __future__ import annotations

import csv
import io

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, Sum
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from campaigns.email import pacing
from campaigns.email.rendering import SAMPLE_TRIGGER, EmailData, render_email, validate_template
from campaigns.email.sandbox import TemplateRefused
from campaigns.email.unsubscribe import LIFTABLE_BY_HAND, lift_by_hand
from campaigns.models import (
    Attribution,
    DevMail,
    EmailEvent,
    EmailSettings,
    EmailTemplate,
    Enrollment,
    Message,
    PromoCode,
    PromoPool,
    StepPromo,
    StepVariant,
    Suppression,
)
from campaigns.models.email import email_hash
from reengage.admin_paging import LargeTablePaginator
from tracking.models import Profile, Site


def sandboxed_frame(html: str, height: int = 700):
    """Show email HTML in the admin without letting it run anything on our origin."""
    return format_html(
        '<iframe sandbox="" srcdoc="{}" style="width:720px;max-width:100%;height:{}px;'
        'border:1px solid #ccc;background:#fff"></iframe>',
        html,
        height,
    )


def preview_data(template: EmailTemplate, profile: Profile | None) -> EmailData:
    """Sample data, or a real visitor's traits and their latest trigger."""
    site = template.site
    data = EmailData(
        message_id=0, site_id=site.pk, site_name=site.name, postal_address=site.postal_address,
        to_email="ada@example.com", traits={"first_name": "Ada", "last_name": "Lovelace"},
        trigger=SAMPLE_TRIGGER, promo_code="SAMPLE10", template_id=template.pk,
        cart_path=site.cart_path, locale=site.locale,
    )  # fmt: skip
    if profile is not None:
        enrollment = Enrollment.objects.filter(profile=profile).order_by("-enrolled_at").first()
        data.to_email = profile.email or ""
        data.traits = profile.traits or {}
        data.trigger = enrollment.trigger_properties if enrollment else {}
    return data


class PreviewForm(forms.Form):
    visitor = forms.CharField(
        required=False, help_text="Email address or profile id of a real visitor of this site."
    )


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "site", "subject", "updated_at"]
    list_filter = ["site"]
    search_fields = ["name", "subject"]
    change_form_template = "campaigns/email/admin_template_change_form.html"

    def get_urls(self):
        own = [
            path("<int:pk>/preview/", self.admin_site.admin_view(self.preview_view),
                 name="campaigns_emailtemplate_preview"),
            path("<int:pk>/send-test/", self.admin_site.admin_view(self.send_test_view),
                 name="campaigns_emailtemplate_send_test"),
            path("live-preview/", self.admin_site.admin_view(self.live_preview_view),
                 name="campaigns_emailtemplate_live_preview"),
        ]  # fmt: skip
        return own + super().get_urls()

    def _profile(self, template: EmailTemplate, raw: str) -> Profile | None:
        raw = (raw or "").strip()
        if not raw:
            return None
        profiles = Profile.objects.filter(site=template.site)
        if raw.isdigit():
            return profiles.filter(pk=int(raw)).first()
        return profiles.filter(email__iexact=raw).order_by("-last_seen_at").first()

    def live_preview_view(self, request: HttpRequest) -> HttpResponse:
        """The change form's live preview: render the unsaved fields as the marketer types."""
        if request.method != "POST" or not self.has_view_permission(request):
            return JsonResponse({"error": "POST the template's fields"}, status=405)
        site = Site.objects.filter(pk=request.POST.get("site") or None).first()
        if site is None:
            return JsonResponse({"errors": {"site": ["Choose the site first."]}})
        template = EmailTemplate(
            pk=None, site=site, name="preview",
            **{part: request.POST.get(part, "") for part in ("subject", "preheader", "html", "text")},
        )  # fmt: skip
        try:
            validate_template(template)
        except ValidationError as exc:
            return JsonResponse({"errors": exc.message_dict})
        profile = self._profile(template, request.POST.get("visitor", ""))
        try:
            rendered = render_email(template, preview_data(template, profile), tracking=False)
        except TemplateRefused as exc:  # the rendering budget, with this visitor's data
            return JsonResponse({"errors": {"html": [str(exc)]}})
        return JsonResponse(
            {"subject": rendered.subject, "html": rendered.html, "text": rendered.text,
             "visitor": str(profile) if profile else ""}
        )  # fmt: skip

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        template = get_object_or_404(EmailTemplate, pk=pk)
        if not self.has_view_permission(request, template):
            raise PermissionDenied
        form = PreviewForm(request.GET or None)
        profile = None
        if form.is_valid() and form.cleaned_data["visitor"]:
            profile = self._profile(template, form.cleaned_data["visitor"])
            if profile is None:
                form.add_error("visitor", "No visitor of this site with that email or id.")
        try:
            rendered = render_email(template, preview_data(template, profile), tracking=False)
        except TemplateRefused as exc:  # the rendering budget, with this visitor's data
            messages.error(request, f"The preview could not be rendered: {exc}")
            return HttpResponseRedirect(reverse("admin:campaigns_emailtemplate_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": template,
            "title": f"Preview: {template}",
            "form": form,
            "profile": profile,
            "rendered": rendered,
            "frame": sandboxed_frame(rendered.html),
        }
        return TemplateResponse(request, "campaigns/email/admin_preview.html", context)

    def send_test_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        from campaigns.email.sending import send_test

        template = get_object_or_404(EmailTemplate, pk=pk)
        back = reverse("admin:campaigns_emailtemplate_change", args=[pk])
        if request.method != "POST" or not self.has_change_permission(request, template):
            return HttpResponseRedirect(back)
        if not request.user.email:
            messages.error(request, "Your admin user has no email address; add one first.")
            return HttpResponseRedirect(back)
        profile = self._profile(template, request.POST.get("visitor", ""))
        try:
            send_test(template, request.user.email, preview_data(template, profile))
        except Exception as exc:  # shown to the marketer, who can act on it
            messages.error(request, f"The test email was not sent: {exc}")
        else:
            messages.success(request, f"Test email sent to {request.user.email}.")
        return HttpResponseRedirect(back)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["to_email", "campaign", "step_number", "status", "sent_at", "attempts"]
    # A date filter (today, past 7 days, this month…) rather than a date hierarchy,
    # whose year links cost a scan of the whole outbox on every page view.
    list_filter = ["status", "site", "campaign", "created_at"]
    search_fields = ["to_email", "esp_message_id"]
    search_help_text = "The recipient's exact email address (any case) or the ESP's message id."
    list_select_related = ["campaign"]
    # Steps are numbered from 1 on every screen (the stored position counts from 0).
    readonly_fields = [
        "step_number" if f.name == "position" else f.name for f in Message._meta.fields
    ]
    exclude = ["position"]
    actions = ["send_again"]
    show_full_result_count = False
    paginator = LargeTablePaginator

    def get_search_results(self, request, queryset, search_term):
        """Exact matches through indexes: the recipient's profile by its Upper(email)
        index, or the ESP's id. A substring match scans the whole outbox."""
        term = search_term.strip()
        if not term:
            return queryset, False
        # Ids first: an OR with a subquery would not use either index.
        people = list(Profile.objects.filter(email__iexact=term).values_list("pk", flat=True))
        match = Q(profile__in=people, to_email__iexact=term) | Q(esp_message_id=term)
        return queryset.filter(match), False

    def has_add_permission(self, request):
        return False

    @admin.display(description="step", ordering="position")
    def step_number(self, message: Message) -> int:
        return message.position + 1

    def changelist_view(self, request, extra_context=None):
        extra_context = {"subtitle": pacing.outbox_summary(timezone.now()), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.action(description="Send again (failed only; check the ESP first for interrupted ones)")
    def send_again(self, request, queryset):
        requeued = queryset.filter(status=Message.Status.FAILED).update(
            status=Message.Status.QUEUED, not_before=None, error="", attempts=0
        )
        self.message_user(request, f"{requeued} failed message(s) queued again.")


NOT_LIFTABLE = (
    "an unsubscribe or a spam complaint is the person's own choice, which only they can undo "
    "(from the preferences link in any email), and an erased person's suppression is what "
    "remains of their deletion request."
)


class SuppressionAddForm(forms.ModelForm):
    """Adding an address by hand: which site, which address, and why."""

    class Meta:
        model = Suppression
        fields = ["site", "email", "note"]
        labels = {"note": "Why"}
        help_texts = {
            "email": "Never email this address from this site's campaigns again.",
            "note": "Kept with the suppression, e.g. “asked us by phone on 3 May”.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True
        self.fields["note"].required = True

    def clean(self):
        cleaned = super().clean()
        site, address = cleaned.get("site"), cleaned.get("email")
        if site and address:
            existing = Suppression.objects.filter(site=site, email_hash=email_hash(address)).first()
            if existing:
                self.add_error(
                    "email",
                    f"{address} is already suppressed on {site} "
                    f"({existing.get_reason_display()}, since {existing.created_at:%Y-%m-%d}).",
                )
        return cleaned


class LiftForm(forms.Form):
    reason = forms.CharField(
        max_length=300,
        help_text="Why this address may be emailed again, e.g. “the mailbox works again”.",
    )


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """Add by hand with a reason; lift by hand with a reason (both in the history)."""

    list_display = ["email", "site", "reason", "note", "created_at"]
    list_filter = ["reason", "site"]
    search_fields = ["email", "email_hash"]
    change_form_template = "admin/campaigns/suppression/change_form.html"

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = SuppressionAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["site", "email", "note"]
        return ["site", "email", "email_hash", "reason", "note", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        # Only the note changes afterwards: the address and its reason are the record.
        return [] if obj is None else ["site", "email", "email_hash", "reason", "created_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.email = obj.email.strip().lower()
            obj.email_hash = email_hash(obj.email)
            obj.reason = Suppression.Reason.MANUAL
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # lifted through "Remove", which asks why; never a bare delete

    def change_view(self, request, object_id, form_url="", extra_context=None):
        suppression = self.get_object(request, object_id)
        liftable = suppression is not None and suppression.reason in LIFTABLE_BY_HAND
        extra_context = {**(extra_context or {}), "liftable": liftable}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        own = [
            path("<int:pk>/remove/", self.admin_site.admin_view(self.lift_view),
                 name="campaigns_suppression_remove"),
        ]  # fmt: skip
        return own + super().get_urls()

    def lift_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Remove the suppression, asking why; refuses what only the person may undo."""
        suppression = get_object_or_404(Suppression.objects.select_related("site"), pk=pk)
        if not self.has_change_permission(request, suppression):
            raise PermissionDenied
        back = reverse("admin:campaigns_suppression_change", args=[pk])
        if suppression.reason not in LIFTABLE_BY_HAND:
            messages.error(request, f"{suppression} cannot be removed by hand: {NOT_LIFTABLE}")
            return HttpResponseRedirect(back)
        form = LiftForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            if lift_by_hand(suppression):
                LogEntry.objects.log_actions(
                    request.user.pk, [suppression], DELETION, single_object=True,
                    change_message=f"Removed by hand: {form.cleaned_data['reason']}",
                )  # fmt: skip
                messages.success(
                    request, f"{suppression.email or suppression} may be emailed again."
                )
            return HttpResponseRedirect(reverse("admin:campaigns_suppression_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": suppression,
            "title": f"Remove the suppression of {suppression.email or suppression}",
            "form": form,
        }
        return TemplateResponse(request, "admin/campaigns/suppression/remove.html", context)


@admin.register(EmailSettings)
class EmailSettingsAdmin(admin.ModelAdmin):
    list_display = ["site", "open_tracking", "click_tracking", "sends_per_minute",
                    "sent_last_minute", "queued", "paused_until",
                    "attribution_days", "attribute_opens"]  # fmt: skip

    def get_queryset(self, request):
        # Each site's queue, counted no further than pacing.COUNT_UP_TO rows.
        queued = RawSQL(
            "SELECT count(*) FROM (SELECT 1 FROM campaigns_message m WHERE m.site_id ="
            " campaigns_emailsettings.site_id AND m.status = 'queued' LIMIT %s) AS q",
            [pacing.COUNT_UP_TO + 1],
        )
        return super().get_queryset(request).annotate(queued_count=queued)

    def changelist_view(self, request, extra_context=None):
        now = timezone.now()
        self._now, self._paused = now, pacing.paused_sites(now)
        extra_context = {"subtitle": pacing.outbox_summary(now), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description="sent in the last minute")
    def sent_last_minute(self, obj: EmailSettings):
        rate = pacing.sent_last_minute(getattr(self, "_now", None) or timezone.now(), obj.site_id)
        return "?" if rate is None else rate

    @admin.display(description="queued", ordering="queued_count")
    def queued(self, obj: EmailSettings):
        found = getattr(obj, "queued_count", None) or 0
        return f"{pacing.COUNT_UP_TO:,}+" if found > pacing.COUNT_UP_TO else found

    @admin.display(description="paused by the ESP until")
    def paused_until(self, obj: EmailSettings):
        until = getattr(self, "_paused", {}).get(obj.site_id)
        return until.strftime("%H:%M:%S UTC") if until else "-"


@admin.register(EmailEvent)
class EmailEventAdmin(admin.ModelAdmin):
    list_display = ["esp_name", "event_type", "recipient", "occurred_at", "message"]
    list_filter = ["esp_name", "event_type"]
    search_fields = ["recipient", "event_key"]
    readonly_fields = [f.name for f in EmailEvent._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Attribution)
class AttributionAdmin(admin.ModelAdmin):
    list_display = ["message", "event_id", "ordered_at", "revenue", "currency"]
    list_filter = ["site"]
    readonly_fields = [f.name for f in Attribution._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(DevMail)
class DevMailAdmin(admin.ModelAdmin):
    """The development mailbox: what EMAIL_BACKEND=campaigns.email.devmail.EmailBackend kept."""

    list_display = ["subject", "to", "received_at"]
    search_fields = ["subject", "to"]
    fields = ["received_at", "from_email", "to", "subject", "rendered", "text", "headers",
              "metadata", "tags", "message", "esp_message_id"]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="HTML")
    def rendered(self, obj: DevMail):
        return sandboxed_frame(obj.html) if obj.html else "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_module_permission(self, request):
        return settings.EMAIL_BACKEND == "campaigns.email.devmail.EmailBackend" or (
            DevMail.objects.exists()
        )


@admin.register(StepVariant)
class StepVariantAdmin(admin.ModelAdmin):
    """A/B variants of a step and their results, from the messages each variant sent."""

    list_display = ["step", "template", "share", "sent", "opened", "clicked", "orders",
                    "revenue"]  # fmt: skip
    list_select_related = ["step__campaign", "template"]
    list_filter = ["step__campaign"]

    def changelist_view(self, request, extra_context=None):
        self._results = {
            (row["step_id"], row["template_id"]): row
            # Not a join on variants: that would repeat each message once per variant.
            for row in Message.objects.filter(step_id__in=StepVariant.objects.values("step_id"))
            .values("step_id", "template_id")
            .annotate(
                sent_n=Count("id", filter=Q(sent_at__isnull=False), distinct=True),
                opened_n=Count("id", filter=Q(opened_at__isnull=False), distinct=True),
                clicked_n=Count("id", filter=Q(clicked_at__isnull=False), distinct=True),
                orders_n=Count("attributions", distinct=True),
                revenue_sum=Sum("attributions__revenue"),
            )
        }
        return super().changelist_view(request, extra_context)

    def _result(self, obj, key):
        return getattr(self, "_results", {}).get((obj.step_id, obj.template_id), {}).get(key) or 0

    @admin.display(description="sent")
    def sent(self, obj):
        return self._result(obj, "sent_n")

    @admin.display(description="opened")
    def opened(self, obj):
        return self._result(obj, "opened_n")

    @admin.display(description="clicked")
    def clicked(self, obj):
        return self._result(obj, "clicked_n")

    @admin.display(description="orders")
    def orders(self, obj):
        return self._result(obj, "orders_n")

    @admin.display(description="revenue")
    def revenue(self, obj):
        return self._result(obj, "revenue_sum")


class CodeImportForm(forms.Form):
    csv_file = forms.FileField(help_text="One code per line (the first column of a CSV).")


def import_codes(pool: PromoPool, data: bytes) -> int:
    """Add the file's codes to the pool (existing ones are kept as they are); how many new."""
    text = data.decode("utf-8-sig")
    codes = []
    for row in csv.reader(io.StringIO(text)):
        code = row[0].strip() if row else ""
        if code and len(code) <= 100 and code.lower() != "code":
            codes.append(code)
    before = pool.codes.count()
    # promo_code_unique (pool, code): a code already in the pool is never added twice.
    PromoCode.objects.bulk_create(
        [PromoCode(pool=pool, code=code) for code in dict.fromkeys(codes)], ignore_conflicts=True
    )
    return pool.codes.count() - before


@admin.register(PromoPool)
class PromoPoolAdmin(admin.ModelAdmin):
    list_display = ["name", "site", "codes_total", "codes_left"]
    change_form_template = "campaigns/email/admin_pool_change_form.html"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                total_n=Count("codes"), left_n=Count("codes", filter=Q(codes__message__isnull=True))
            )
        )

    @admin.display(description="codes")
    def codes_total(self, obj):
        return obj.total_n

    @admin.display(description="not handed out")
    def codes_left(self, obj):
        return obj.left_n

    def get_urls(self):
        own = [
            path("<int:pk>/import/", self.admin_site.admin_view(self.import_view),
                 name="campaigns_promopool_import"),
        ]  # fmt: skip
        return own + super().get_urls()

    def import_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        pool = get_object_or_404(PromoPool, pk=pk)
        if not self.has_change_permission(request, pool):
            raise PermissionDenied
        form = CodeImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                added = import_codes(pool, form.cleaned_data["csv_file"].read())
            except UnicodeDecodeError:
                form.add_error("csv_file", "The file is not UTF-8 text.")
            else:
                messages.success(request, f"Imported {added} new codes into {pool}.")
                return HttpResponseRedirect(reverse("admin:campaigns_promopool_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": pool,
            "title": f"Import codes into {pool}",
            "form": form,
        }
        return TemplateResponse(request, "campaigns/email/admin_pool_import.html", context)


@admin.register(StepPromo)
class StepPromoAdmin(admin.ModelAdmin):
    list_display = ["step", "fixed_code", "pool"]
