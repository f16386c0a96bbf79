"""Data-subject requests from the admin: erase or export the selected people.

The profile admin lives in tracking (which knows nothing of campaigns); these
actions need campaigns' data, call `campaigns.people.privacy`, and are added to it by
`campaigns.admin.people`.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from django.utils import timezone

from campaigns.people.privacy import export, forget
from tracking.models import Profile


def _identify(profile: Profile) -> dict:
    """How `campaigns.people.privacy` names this person: the email, else an id of theirs."""
    if profile.email:
        return {"email": profile.email}
    anonymous_id = profile.visitors.values_list("anonymous_id", flat=True).first()
    return {"anonymous_id": anonymous_id or profile.user_id or ""}


@admin.action(description="Erase the selected people (GDPR; a hashed suppression remains)",
              permissions=["delete"])  # fmt: skip
def erase_people(modeladmin, request, queryset):
    erased = 0
    for profile in list(queryset.select_related("site")):
        who = _identify(profile)
        if not any(who.values()):
            profile.delete()
            erased += 1
            continue
        report = forget(profile.site, now=timezone.now(), **who)
        erased += report.profiles
    modeladmin.message_user(
        request, f"Erased {erased} people and everything held about them.", messages.SUCCESS
    )


@admin.action(description="Export everything held about the selected people (JSON)")
def export_people(modeladmin, request, queryset):
    data = [export(p.site, **_identify(p)) for p in queryset.select_related("site")]
    response = HttpResponse(
        json.dumps(data, cls=DjangoJSONEncoder, indent=2), content_type="application/json"
    )
    response["Content-Disposition"] = 'attachment; filename="reengage-people.json"'
    return response
