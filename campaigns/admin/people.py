"""The people (profiles) admin as marketers use it: search, the visitor timeline,
and the data-subject actions.

Tracking registers a profile admin that knows nothing of campaigns; this one
replaces it, adding what needs campaigns' data.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from campaigns.admin.privacy import erase_people, export_people
from campaigns.people.timeline import Cursor, timeline
from tracking.admin import ProfileAdmin
from tracking.models import Profile, Visitor


class PersonAdmin(ProfileAdmin):
    list_display = ["__str__", "site", "email_verified", "last_seen_at", "timeline_link"]
    actions = [erase_people, export_people]
    readonly_fields = [
        "timeline_link",
        *(f for f in ProfileAdmin.readonly_fields if f != "recent_events"),
    ]

    def has_delete_permission(self, request, obj=None):
        # Deleting goes through "erase" (suppression, audience removals), never a bare delete.
        return request.user.has_perm("tracking.delete_profile") and obj is None

    @admin.display(description="timeline")
    def timeline_link(self, profile: Profile, cookie: str = "") -> str:
        url = reverse("admin:tracking_profile_timeline", args=[profile.pk])
        if cookie:
            url += "?" + urlencode({"cookie": cookie})
        return format_html('<a href="{}">Timeline</a>', url)

    def get_list_display(self, request):
        """The timeline links carry the cookie ID searched for, so an anonymous
        visitor's timeline is titled by the identifier the marketer knows."""
        term = request.GET.get("q", "").strip()
        if not term or "@" in term:
            return self.list_display

        @admin.display(description="timeline")
        def timeline(profile: Profile) -> str:
            return self.timeline_link(profile, cookie=term)

        return [timeline if name == "timeline_link" else name for name in self.list_display]

    def get_urls(self):
        own = [
            path("<int:pk>/timeline/", self.admin_site.admin_view(self.timeline_view),
                 name="tracking_profile_timeline"),
        ]  # fmt: skip
        return own + super().get_urls()

    def timeline_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        profile = get_object_or_404(Profile.objects.select_related("site", "merged_into"), pk=pk)
        if not self.has_view_permission(request, profile):
            raise PermissionDenied
        before = None
        if request.GET.get("before"):
            try:
                before = Cursor.parse(request.GET["before"])
            except ValueError:
                return HttpResponseBadRequest(
                    "before: not a timeline position (use the page's “Older” link)"
                )
        page = timeline(profile, before=before)
        cookies = list(
            Visitor.objects.filter(site_id=profile.site_id, profile=profile)
            .order_by("-last_seen_at")
            .values_list("anonymous_id", flat=True)[:COOKIES_SHOWN]
        )
        label = known_as(profile, cookies, request.GET.get("cookie", ""))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Timeline: {label}",
            "known_as": label,
            "cookies": cookies,
            "opts": self.model._meta,
            "original": profile,
            "page": page,
            "entries": [
                (
                    entry,
                    entry.link[0] if entry.link and request.user.has_perm(entry.link[1]) else "",
                )
                for entry in page.entries
            ],
            "first_page": before is None,
        }
        return TemplateResponse(request, "admin/tracking/profile/timeline.html", context)


COOKIES_SHOWN = 5


def known_as(profile: Profile, cookies: list[str], searched: str = "") -> str:
    """The identifier a marketer knows the person by: email, user ID, else a cookie ID
    (the one searched for, when it is this visitor's), never "profile 4"."""
    if profile.email or profile.user_id:
        return str(profile)
    if searched and searched in cookies:
        return f"anonymous visitor {searched}"
    if cookies:
        return f"anonymous visitor {cookies[0]}"
    return str(profile)


admin.site.unregister(Profile)
admin.site.register(Profile, PersonAdmin)
