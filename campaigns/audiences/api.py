"""The audience pull API, exports over the API, and the on-site tag endpoint.

- `GET /api/v1/audiences/<id>/members?cursor=&limit=`: current members, keyset-paginated.
- `GET /api/v1/audiences/<id>/changes?cursor=&limit=`: every add and remove after `cursor`.
- `GET /api/v1/audiences/<id>/export?format=meta|google|csv|json`: a streamed file.

These authenticate with the site's secret key (HTTP Basic username, as the
ingest API) or a destination's read-only token (`Authorization: Bearer rt_…`),
which reads its own audience only.

- `GET /v1/audiences/<write_key>/<anonymous_id>`: the tags tags.js fires for
  this browser's current memberships (public, CORS for the site's domains).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlsplit

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.timezone import now as tz_now
from django.views.decorators.http import require_GET

from campaigns.audiences import exports
from campaigns.audiences.delivery import change_json
from campaigns.models import Audience, AudienceChange, Destination
from tracking.auth import secret_key_required
from tracking.ingest import is_storable
from tracking.keys import lookup_key

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000


def _error(status: int, message: str, field: str) -> JsonResponse:
    return JsonResponse({"success": False, "error": message, "field": field}, status=status)


def audience_reader(view: Callable) -> Callable:
    """Secret key (Basic) or the audience's destination token (Bearer) → `audience` kwarg."""

    def by_site(request: HttpRequest, audience_id: int, site_id: int) -> HttpResponse:
        audience = Audience.objects.filter(pk=audience_id, site_id=site_id).first()
        if audience is None:
            return _error(404, f"this site has no audience {audience_id}", "id")
        return view(request, audience=audience)

    by_secret_key = secret_key_required(by_site)

    @wraps(view)
    def wrapper(request: HttpRequest, audience_id: int) -> HttpResponse:
        scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer":
            return by_secret_key(request, audience_id)
        destination = Destination.for_token(token.strip(), now=tz_now())
        if destination is None:
            return _error(401, "unknown or revoked token", "Authorization")
        if destination.audience_id != audience_id:
            return _error(
                403, f"this token reads audience {destination.audience_id} only", "Authorization"
            )
        return view(request, audience=destination.audience)

    return wrapper


def _int_param(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name, "")
    if raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ValueError(f"must be a whole number from {low} to {high}")
    return int(raw)


def _page_params(request: HttpRequest) -> tuple[int, int] | JsonResponse:
    try:
        cursor = _int_param(request, "cursor", 0, 0, 2**63 - 1)
    except ValueError as exc:
        return _error(400, f"{exc} (the nextCursor of the previous page)", "cursor")
    try:
        limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    except ValueError as exc:
        return _error(400, str(exc), "limit")
    return cursor, limit


@require_GET
@audience_reader
def members(request: HttpRequest, audience: Audience) -> JsonResponse:
    params = _page_params(request)
    if isinstance(params, JsonResponse):
        return params
    cursor, limit = params
    rows = next(exports.member_pages(audience.id, after=cursor, page=limit, limit=limit), [])
    data = [exports.member_json(row) for row in rows]
    return JsonResponse(
        {
            "audience": {"id": audience.id, "name": audience.name},
            "data": data,
            "nextCursor": str(rows[-1][0]) if len(rows) == limit else None,
        }
    )


@require_GET
@audience_reader
def changes(request: HttpRequest, audience: Audience) -> JsonResponse:
    params = _page_params(request)
    if isinstance(params, JsonResponse):
        return params
    cursor, limit = params
    page = list(
        AudienceChange.objects.filter(audience_id=audience.id, id__gt=cursor).order_by("id")[
            : limit + 1
        ]
    )
    has_more = len(page) > limit
    page = page[:limit]
    return JsonResponse(
        {
            "audience": {"id": audience.id, "name": audience.name},
            "data": [change_json(c) for c in page],
            # Always a cursor to resume from, even when nothing is new yet.
            "nextCursor": str(page[-1].id if page else cursor),
            "hasMore": has_more,
        }
    )


@require_GET
@audience_reader
def export(request: HttpRequest, audience: Audience) -> HttpResponse:
    format_name = request.GET.get("format", "")
    if format_name not in exports.FORMATS:
        return _error(400, f"must be one of {', '.join(exports.FORMATS)}", "format")
    return exports.streaming_response(audience, format_name)


# --- on-site tags ------------------------------------------------------------------------

TAGS = """
SELECT a.id, a.tag_type, a.tag_url, a.tag_event
FROM tracking_visitor v
JOIN tracking_profile p ON p.id = v.profile_id
JOIN tracking_site s ON s.id = v.site_id
JOIN campaigns_audiencemember m
  ON m.profile_id = p.id AND m.removed_at IS NULL AND m.expires_at > %(now)s
JOIN campaigns_audience a ON a.id = m.audience_id AND a.tag_type <> ''
WHERE v.site_id = %(site)s AND v.anonymous_id = %(anonymous_id)s AND NOT p.gpc
  -- A profile whose userId a browser only claimed (tracking.trust) may hold what the
  -- shop sent for that userId: its tags wait until a proof or the secret key confirms it.
  AND (p.user_id IS NULL OR p.user_id_proven)
  AND (p.consent -> 'advertising' = 'true'::jsonb
       OR (s.consent_mode <> 'opt-in' AND p.consent -> 'advertising' IS DISTINCT FROM 'false'::jsonb))
ORDER BY a.id
"""


def _tags_response(payload: dict, status: int, origin: str) -> JsonResponse:
    response = JsonResponse(payload, status=status)
    if origin:
        response["Access-Control-Allow-Origin"] = origin
    response["Vary"] = "Origin, Sec-GPC"
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
def tags(request: HttpRequest, write_key: str, anonymous_id: str) -> JsonResponse:
    """The tags to fire for this browser: its current memberships with a tag configured."""
    origin = request.META.get("HTTP_ORIGIN", "")
    key = lookup_key(write_key)
    if key is None or key.trusted:
        # A secret key must never appear in a browser, so it is refused here too.
        return _tags_response({"error": "unknown write key", "field": "writeKey"}, 404, "")
    if origin and not key.allows_origin(urlsplit(origin).hostname or ""):
        return _tags_response(
            {"error": f"origin {origin} is not in this site's allowed domains", "field": "Origin"},
            403,
            "",
        )
    if not is_storable(anonymous_id):
        # PostgreSQL cannot hold a NUL or a lone surrogate: the query would fail.
        return _tags_response(
            {"error": "contains a NUL character or invalid Unicode", "field": "anonymousId"},
            400,
            origin,
        )
    if request.META.get("HTTP_SEC_GPC") == "1" or len(anonymous_id) > 200:
        return _tags_response({"tags": []}, 200, origin)
    with connection.cursor() as cursor:
        cursor.execute(TAGS, {"now": tz_now(), "site": key.site_id, "anonymous_id": anonymous_id})
        rows = cursor.fetchall()
    found = []
    for audience_id, tag_type, url, event in rows:
        audience = Audience(id=audience_id, tag_type=tag_type, tag_url=url, tag_event=event)
        config = audience.tag_config()
        if config:
            found.append(config)
    return _tags_response({"tags": found}, 200, origin)


def snippet_settings(site, request: HttpRequest) -> dict:
    """Added to `/v1/settings/<write_key>`: where tags.js is, for sites whose audiences
    have an on-site tag (the snippet loads it only then, and only with consent)."""
    from django.templatetags.static import static

    if not Audience.objects.filter(site=site).exclude(tag_type="").exists():
        return {}
    # Relative to the host the snippet asked, which serves tags.js too.
    return {"tags": request.build_absolute_uri(static("reengage/tags.js"))}
