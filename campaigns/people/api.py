"""Secret-key API for data-subject requests: export and erase one person."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from campaigns.people.privacy import export, forget
from tracking.auth import secret_key_required
from tracking.ingest import is_storable
from tracking.models import Site


def _who(request: HttpRequest) -> tuple[str, str] | JsonResponse:
    email = request.GET.get("email", "").strip()
    anonymous_id = request.GET.get("anonymousId", "").strip()
    if bool(email) == bool(anonymous_id):
        return JsonResponse(
            {"success": False, "error": "give exactly one of email or anonymousId",
             "field": "email"},
            status=400,
        )  # fmt: skip
    for field, value in (("email", email), ("anonymousId", anonymous_id)):
        if not is_storable(value):
            return JsonResponse(
                {"success": False, "error": "contains a NUL character or invalid Unicode",
                 "field": field},
                status=400,
            )  # fmt: skip
    if email and ("@" not in email or len(email) > 254):
        return JsonResponse(
            {"success": False, "error": "is not an email address", "field": "email"}, status=400
        )
    return email, anonymous_id


@csrf_exempt
@secret_key_required
def person(request: HttpRequest, site_id: int) -> JsonResponse:
    """GET: everything held (access). DELETE: erase (idempotent); reports what went."""
    if request.method not in ("GET", "DELETE"):
        response = JsonResponse({"success": False, "error": "use GET or DELETE"}, status=405)
        response["Allow"] = "GET, DELETE"
        return response
    who = _who(request)
    if isinstance(who, JsonResponse):
        return who
    email, anonymous_id = who
    site = Site.objects.get(id=site_id)
    if request.method == "GET":
        data = export(site, email=email, anonymous_id=anonymous_id)
        return JsonResponse(data, encoder=DjangoJSONEncoder)
    report = forget(site, email=email, anonymous_id=anonymous_id, now=timezone.now())
    return JsonResponse({"success": True, "erased": report.as_dict()})
