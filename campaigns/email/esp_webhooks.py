"""Anymail's ESP tracking webhooks, as reengage mounts them at /anymail/<esp>/tracking/.

How this differs from `include("anymail.urls")`:

- **Tracking only.** Anymail's inbound-mail webhooks are not mounted: reengage
  does not receive mail, so they would only be more code parsing strangers' MIME.
- **An ESP whose Python package is not installed answers 501 saying what to
  install.** Amazon SES needs boto3 (`pip install 'reengage[ses]'`); without it
  Anymail's view would answer every call with a 500, and an unmounted URL with
  Django's 404 page, neither of which tells the operator what is missing.
- **An ESP that needs a setting it lacks is a 404.** Some views need their
  ESP's signing key (e.g. ANYMAIL_MAILERSEND_SIGNING_SECRET) and raise without
  it, on every call; the 404 names the setting, and a warning is logged.
- **A payload that is not the ESP's shape is a 400, not a 500.** Anymail's
  parsers index into the JSON they expect and let KeyError or TypeError escape,
  which Django answers with a 500 — and ESPs retry 5xx for days. Errors raised
  while validating or parsing the payload become a 400 JSON naming the body;
  errors after parsing (our receiver storing the event, e.g. the database being
  down) stay 5xx, so the ESP retries them as it should.

Basic auth (ANYMAIL_WEBHOOK_SECRET) and signatures (Mailgun's, …) are Anymail's
own checks and run first: a request without them is Anymail's 400 (or, for
Amazon SNS, its 401 asking for credentials).
"""

from __future__ import annotations

import importlib.util
import logging
from functools import wraps

from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailWebhookValidationFailure,
)
from anymail.urls import urlpatterns as anymail_urlpatterns
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt

from reengage.esp import ANYMAIL_ESPS

log = logging.getLogger(__name__)

# What Anymail's parsers raise on a payload of the wrong shape. Validation
# failures (bad auth or signature) are not among them: Anymail answers those.
UNREADABLE = (
    KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError, AnymailAPIError,
)  # fmt: skip

# ESP: (the package its Anymail module needs, reengage's pip extra that installs it)
NEEDS_PACKAGE = {
    key: (limits.needs_package, limits.extra)
    for key, limits in ANYMAIL_ESPS.items()
    if limits.needs_package
}


class UnreadablePayload(Exception):
    pass


class RefuseUnreadablePayloads:
    """Mixed in before an Anymail webhook view (see the module docstring)."""

    def run_validators(self, request: HttpRequest) -> None:
        try:
            super().run_validators(request)
        except AnymailWebhookValidationFailure:
            raise
        except UNREADABLE as exc:
            raise UnreadablePayload(_describe(exc)) from exc

    def parse_events(self, request: HttpRequest) -> list:
        try:
            return list(super().parse_events(request))
        except UNREADABLE as exc:
            raise UnreadablePayload(_describe(exc)) from exc

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return super().post(request, *args, **kwargs)
        except UnreadablePayload as exc:
            error = f"not a {self.esp_name} tracking webhook payload ({exc})"
            return JsonResponse({"error": error, "field": "body"}, status=400)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _missing_package(esp: str) -> tuple[str, str] | None:
    needs = NEEDS_PACKAGE.get(esp)
    if needs is None or importlib.util.find_spec(needs[0]) is not None:
        return None
    return needs


def _not_installed(esp_name: str, package: str, extra: str):
    error = (
        f"{esp_name} webhooks need the {package} package, which is not installed on this "
        f"server: pip install 'reengage[{extra}]' (from a checkout: pip install '.[{extra}]'; "
        f"Docker: build with --build-arg EXTRAS={extra}), then restart"
    )

    @csrf_exempt
    def not_installed(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"error": error, "field": "url"}, status=501)

    return not_installed


def tracking_urlpatterns() -> list[URLPattern]:
    """Anymail's tracking webhook URLs (same paths and names), each view guarded."""
    patterns = []
    for pattern in anymail_urlpatterns:
        if not pattern.name.endswith("_tracking_webhook"):
            continue
        esp = pattern.name.removesuffix("_tracking_webhook")
        view_class = pattern.callback.view_class
        missing = _missing_package(esp)
        if missing:
            view = _not_installed(view_class.esp_name, *missing)
            patterns.append(path(f"{esp}/tracking/", view, name=pattern.name))
            continue
        guarded = type(view_class.__name__, (RefuseUnreadablePayloads, view_class), {})
        view = _guarded(guarded.as_view())
        patterns.append(path(f"{esp}/tracking/", view, name=pattern.name))
    return patterns


def _guarded(view):
    @wraps(view)  # keeps csrf_exempt
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except AnymailConfigurationError as exc:
            log.warning("ESP webhook %s called but not set up: %s", request.path, exc)
            error = f"this ESP's webhook is not set up on this server: {exc}"
            return JsonResponse({"error": error, "field": "url"}, status=404)

    return wrapper
