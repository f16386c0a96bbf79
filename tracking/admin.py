"""Admin for sites (with their install page), visitors and events."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from reengage.admin_paging import LargeTablePaginator
from tracking import install
from tracking.models import DroppedCount, Event, Profile, Site, Visitor

RECENT_EVENTS = 100


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["name", "domain_list", "consent_mode", "last_event_at", "created_at"]
    search_fields = ["name", "domains"]
    readonly_fields = ["write_key", "secret_key_masked", "last_event_at", "created_at", "snippet"]
    actions = ["rotate_secret_key"]
    change_form_template = "admin/tracking/site/change_form.html"
    fieldsets = [
        (
            None,
            {"fields": ["name", "domains", "timezone", "locale", "postal_address", "cart_path"]},
        ),
        ("Privacy", {"fields": ["consent_mode", "anonymize_ip", "retention_days", "cookie_days"]}),
        (
            "Ingest",
            {
                "fields": [
                    "events_per_minute",
                    "require_identity_proof",
                    "browser_order_revenue",
                    "last_event_at",
                ]
            },
        ),
        (
            "Keys and install",
            {"fields": ["write_key", "secret_key_masked", "snippet", "created_at"]},
        ),
    ]

    def get_urls(self):
        own = [
            path("<int:pk>/install/", self.admin_site.admin_view(self.install_view),
                 name="tracking_site_install"),
            path("<int:pk>/install/last-event/", self.admin_site.admin_view(self.last_event_view),
                 name="tracking_site_last_event"),
        ]  # fmt: skip
        return own + super().get_urls()

    def _site(self, request: HttpRequest, pk: int) -> Site:
        site = get_object_or_404(Site, pk=pk)
        if not self.has_view_permission(request, site):
            raise PermissionDenied
        return site

    def install_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The snippet and pixel to copy, server-side examples, and a live check."""
        site = self._site(request, pk)
        loader, pixel = install.snippet_parts(site, settings.PUBLIC_URL)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Install {site}",
            "opts": self.model._meta,
            "original": site,
            "loader": loader,
            "pixel": pixel,
            "examples": install.install_examples(settings.PUBLIC_URL),
            "sdk_snippets": install.sdk_snippets(settings.PUBLIC_URL, site.write_key),
            "secret_variable": install.SECRET_KEY_VARIABLE,
            "example_email": install.EXAMPLE_EMAIL,
            "example_user_id": install.EXAMPLE_USER_ID,
            "last_event": install.last_event(site, timezone.now()),
            "last_event_url": reverse("admin:tracking_site_last_event", args=[site.pk]),
        }
        return TemplateResponse(request, "admin/tracking/site/install.html", context)

    def last_event_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        """What the install page polls: when the last event arrived, what and from where."""
        site = self._site(request, pk)
        return JsonResponse(install.last_event(site, timezone.now()))

    @admin.display(description="domains")
    def domain_list(self, site: Site) -> str:
        return ", ".join(site.domains) or "—"

    def save_model(self, request, site: Site, form, change: bool) -> None:
        super().save_model(request, site, form, change)
        if not change:
            # Shown once: afterwards only the masked form is, and a lost key is rotated.
            self.message_user(
                request,
                f"{site.name}: secret key {site.secret_key} — copy it now, "
                "it is not shown again in full.",
                messages.WARNING,
            )

    @admin.display(description="secret key")
    def secret_key_masked(self, site: Site) -> str:
        if not site.pk:
            return "shown once the site is saved"
        return f"{site.secret_key[:6]}…{site.secret_key[-4:]} (use “rotate secret key” to get a new one)"

    @admin.display(description="snippet to paste")
    def snippet(self, site: Site) -> str:
        if not site.pk:
            return "—"
        from tracking.management.commands.createsite import loader_for

        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", loader_for(site))

    @admin.action(description="Rotate secret key (the old one works for 24 hours)")
    def rotate_secret_key(self, request, queryset):
        for site in queryset:
            new = site.rotate_secret_key()
            self.message_user(
                request,
                f"{site.name}: new secret key {new} — copy it now, it is not shown again in full.",
                messages.WARNING,
            )


class VisitorInline(admin.TabularInline):
    model = Visitor
    extra = 0
    fields = ["anonymous_id", "first_seen_at", "last_seen_at"]
    readonly_fields = fields
    can_delete = False


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["__str__", "site", "email_verified", "last_seen_at"]
    list_filter = ["site", "email_verified"]
    search_fields = ["email", "user_id", "visitors__anonymous_id"]
    search_help_text = (
        "An exact email address (any case), anonymous ID (the rg_aid cookie), user ID "
        "or profile number."
    )
    show_full_result_count = False
    paginator = LargeTablePaginator
    readonly_fields = [*(f.name for f in Profile._meta.fields), "recent_events"]
    inlines = [VisitorInline]

    def get_search_results(self, request, queryset, search_term):
        """Exact matches only, each found through an index. The admin's default
        (a substring match on every field, joined to visitors) reads every profile:
        seconds once a site has a million of them."""
        term = search_term.strip()
        if not term:
            return queryset, False
        sites = list(Site.objects.values_list("id", flat=True))
        # (site, anonymous_id) is the visitors' unique key: naming the sites uses it.
        browsers = Visitor.objects.filter(site_id__in=sites, anonymous_id=term)
        match = (
            Q(email__iexact=term)
            | Q(site_id__in=sites, user_id=term)
            | Q(pk__in=list(browsers.values_list("profile_id", flat=True)))
        )
        if term.isdigit():
            match |= Q(pk=int(term))
        return queryset.filter(match), False

    @admin.display(description="recent events")
    def recent_events(self, profile: Profile) -> str:
        # Events have a composite primary key (partitioned table), which the
        # admin cannot list on its own; they are shown here, newest first.
        events = Event.objects.filter(site_id=profile.site_id, profile_id=profile.id)[
            :RECENT_EVENTS
        ]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            ((e.timestamp, e.type, e.name, e.properties) for e in events),
        )
        return format_html(
            "<table><tr><th>time</th><th>type</th><th>event</th><th>properties</th></tr>{}</table>",
            rows,
        )

    def has_add_permission(self, request):
        return False


@admin.register(DroppedCount)
class DroppedCountAdmin(admin.ModelAdmin):
    list_display = ["day", "site", "reason", "count"]
    list_filter = ["site", "reason"]

    def has_add_permission(self, request):
        return False


admin.site.site_header = "reengage"
admin.site.site_title = "reengage"
admin.site.index_title = f"reengage at {settings.PUBLIC_URL}"
