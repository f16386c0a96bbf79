"""Public email endpoints: unsubscribe, preferences, click redirect, open pixel, browser view.

Each parses a signed token, calls one action and answers. A bad or tampered
token gets a 400 page, never a redirect: the click redirect's target URL lives
inside the signed token, so it cannot be pointed anywhere else.
"""

from __future__ import annotations

import base64

from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from campaigns.email import unsubscribe as actions
from campaigns.email.feedback import record_engagement
from campaigns.email.rendering import (
    OPEN_SALT,
    VIEW_SALT,
    read_click_token,
    render_email,
    safe_url,
    tracking_link_max_age,
)
from campaigns.models import CampaignOptOut, EmailSettings, Message
from campaigns.models.email import email_hash

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _invalid(request: HttpRequest, reason: str) -> HttpResponse:
    response = render(request, "campaigns/unsubscribe/invalid.html", {"reason": reason})
    response.status_code = 400
    return response


@csrf_exempt  # the signed token is the credential; RFC 8058 one-click POSTs carry no CSRF token
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks for confirmation (link scanners must not unsubscribe anyone); POST does it."""
    try:
        message = actions.message_for_token(token)
    except actions.BadToken as exc:
        return _invalid(request, str(exc))
    context = {"message": message, "site": message.site, "token": token}
    if request.method == "GET":
        return render(request, "campaigns/unsubscribe/confirm.html", context)
    actions.unsubscribe(message, now=timezone.now(), via=_unsubscribe_via(request))
    return render(request, "campaigns/unsubscribe/done.html", context)


def _unsubscribe_via(request: HttpRequest) -> str:
    """How the POST came: RFC 8058 one-click (the mail app) or the page's button. Only
    noted; a body that does not parse (a broken multipart) still unsubscribes."""
    try:
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    except MultiPartParserError:
        one_click = False
    return "one-click" if one_click else "link"


@never_cache
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    try:
        message = actions.message_for_token(token)
    except actions.BadToken as exc:
        return _invalid(request, str(exc))
    done = ""
    if request.method == "POST":
        choice = request.POST.get("choice")
        now = timezone.now()
        if choice == "campaign":
            actions.leave_campaign(message, now=now)
            done = "campaign"
        elif choice == "all":
            actions.unsubscribe(message, now=now, via="preferences")
            done = "all"
        elif choice == "resubscribe":
            actions.resubscribe(message)
            done = "resubscribe"
        else:
            return HttpResponseBadRequest("choice must be campaign, all or resubscribe")
    context = {
        "message": message,
        "site": message.site,
        "campaign": message.campaign,
        "token": token,
        "done": done,
        "suppressed": actions.is_suppressed(message),
        "left_campaign": bool(message.campaign_id)
        and CampaignOptOut.objects.filter(
            campaign_id=message.campaign_id, email_hash=email_hash(message.to_email)
        ).exists(),
    }
    return render(request, "campaigns/unsubscribe/preferences.html", context)


@never_cache
@require_http_methods(["GET", "HEAD"])
def click(request: HttpRequest, token: str) -> HttpResponse:
    try:
        message_id, url = read_click_token(token)
        url = safe_url(url)
    except signing.SignatureExpired:
        return _invalid(request, "This link has expired.")
    except (signing.BadSignature, UnicodeDecodeError, ValueError):
        return _invalid(request, "This link is not valid.")
    if not url:
        return _invalid(request, "This link is not valid.")
    if request.method == "GET" and Message.objects.filter(pk=message_id).exists():
        record_engagement(message_id, Message.Status.CLICKED, now=timezone.now())
    return HttpResponseRedirect(url)


@never_cache
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    try:
        message_id = signing.loads(token, salt=OPEN_SALT, max_age=tracking_link_max_age())
    except signing.BadSignature:  # SignatureExpired included: an old open is not counted
        message_id = None
    if isinstance(message_id, int) and Message.objects.filter(pk=message_id).exists():
        record_engagement(message_id, Message.Status.OPENED, now=timezone.now())
    return HttpResponse(PIXEL, content_type="image/gif")


# The marketer's HTML runs on our domain here: no scripts, no forms, no framing.
BROWSER_VIEW_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
)


@never_cache
@require_http_methods(["GET"])
def view_in_browser(request: HttpRequest, token: str) -> HttpResponse:
    from campaigns.email.composing import email_data

    try:
        message_id = signing.loads(token, salt=VIEW_SALT, max_age=tracking_link_max_age())
    except signing.SignatureExpired:
        return _invalid(request, "This link has expired.")
    except signing.BadSignature:
        return _invalid(request, "This link is not valid.")
    message = (
        Message.objects.select_related("site", "template", "profile", "enrollment", "campaign")
        .filter(pk=message_id if isinstance(message_id, int) else None)
        .first()
    )
    if message is None or message.template is None:
        return _invalid(request, "This email is no longer available.")
    data = email_data(message, EmailSettings.for_site(message.site_id), message.template_id)
    data.open_tracking = False
    response = HttpResponse(render_email(message.template, data).html)
    response["Content-Security-Policy"] = BROWSER_VIEW_CSP
    return response
