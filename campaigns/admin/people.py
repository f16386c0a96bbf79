"""The people (profiles) admin as marketers use it: search, the visitor timeline,
and the data-subject actions.

Tracking registers a profile admin that knows nothing of campaigns; this one
replaces it, adding what needs campaigns' data.
"""

from __future__ import annotations

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
from tracking.models import Profile


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
    def timeline_link(self, profile: Profile) -> str:
        url = reverse("admin:tracking_profile_timeline", args=[profile.pk])
        return format_html('<a href="{}">Timeline</a>', url)

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
        context = {
            **self.admin_site.each_context(request),
            "title": f"Timeline: {profile}",
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


admin.site.unregister(Profile)
admin.site.register(Profile, PersonAdmin)
