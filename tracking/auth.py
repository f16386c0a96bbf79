"""Secret-key authentication for the server-side read APIs."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, JsonResponse

from tracking.ingest import IngestError
from tracking.keys import basic_username, lookup_key


def secret_key_required(view: Callable) -> Callable:
    """Authenticate with the site's secret key as the HTTP Basic username.

    The view receives `site_id`. A write key is refused: it is public.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        try:
            key_name = basic_username(request)
        except IngestError as exc:
            return JsonResponse(exc.as_json(), status=exc.status)
        key = lookup_key(key_name) if key_name else None
        if key is None:
            response = JsonResponse(
                {"success": False, "error": "send the site's secret key as the HTTP Basic "
                 "username", "field": "Authorization"},
                status=401,
            )  # fmt: skip
            response["WWW-Authenticate"] = 'Basic realm="reengage"'
            return response
        if not key.trusted:
            return JsonResponse(
                {"success": False, "error": "this API needs the secret key, not the write key",
                 "field": "Authorization"},
                status=403,
            )  # fmt: skip
        return view(request, *args, site_id=key.site_id, **kwargs)

    return wrapper
