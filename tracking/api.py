"""`GET /api/v1/profiles/<id>`: what reengage knows about a visitor (secret key)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from tracking.auth import secret_key_required
from tracking.ingest import is_storable
from tracking.models import Event, Profile, Visitor

RECENT_EVENTS = 50


def find_profile(site_id: int, identifier: str) -> Profile | None:
    """An anonymousId first (the common case), then a userId."""
    if not is_storable(identifier):
        return None  # ingest refuses such ids, so no visitor has one
    visitor = (
        Visitor.objects.filter(site_id=site_id, anonymous_id=identifier)
        .select_related("profile")
        .first()
    )
    if visitor:
        return visitor.profile
    return Profile.objects.filter(site_id=site_id, user_id=identifier).first()


def profile_json(profile: Profile, *, events: int = RECENT_EVENTS) -> dict:
    recent = Event.objects.filter(site_id=profile.site_id, profile_id=profile.id).order_by(
        "-timestamp"
    )[:events]
    return {
        **profile.as_json(),
        "anonymousIds": sorted(profile.visitors.values_list("anonymous_id", flat=True)),
        "recentEvents": [
            {
                "messageId": e.message_id,
                "type": e.type,
                "event": e.name,
                "anonymousId": e.anonymous_id,
                "userId": e.user_id,
                "timestamp": e.timestamp.isoformat(),
                "receivedAt": e.received_at.isoformat(),
                "properties": e.properties,
            }
            for e in recent
        ],
    }


@require_GET
@secret_key_required
def profile_detail(request: HttpRequest, identifier: str, site_id: int) -> JsonResponse:
    profile = find_profile(site_id, identifier)
    if profile is None:
        return JsonResponse(
            {"success": False, "error": f"no visitor with anonymousId or userId {identifier!r}",
             "field": "id"},
            status=404,
        )  # fmt: skip
    return JsonResponse(profile_json(profile))
