"""Body size limits for the public email endpoints, enforced before anything reads the body.

A middleware, not a view decorator: CSRF checks (the preferences form) read the
body before any view runs. Over the limit (by Content-Length) is a 413 JSON
naming the body, and not one byte of it is read. A request without a
Content-Length (chunked) gets no body at all from Django's WSGI handler.

- /email/…   (unsubscribe, preferences, links): 64 KiB — the forms post a field or two;
  anything bigger, a multipart body especially, would be parsed to its end and
  its "files" spooled to disk.
- /anymail/… (ESP webhooks): DATA_UPLOAD_MAX_MEMORY_SIZE (Django's, 2.5 MB), which
  Django enforces anyway, but with a bare 400.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

FORM_MAX_BYTES = 64 * 1024


def limit_for(path: str) -> int | None:
    if path.startswith("/email/"):
        return FORM_MAX_BYTES
    if path.startswith("/anymail/"):
        return settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return None


def content_length(request: HttpRequest) -> int:
    """The declared body size; none (or garbage) means Django reads no body at all."""
    raw = request.META.get("CONTENT_LENGTH") or "0"
    return int(raw) if raw.isascii() and raw.isdigit() else 0


class BodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = limit_for(request.path_info)
        if limit is not None and content_length(request) > limit:
            return JsonResponse(
                {"success": False, "error": f"the body is over {limit} bytes", "field": "body"},
                status=413,
            )
        return self.get_response(request)
