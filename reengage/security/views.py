"""The admin's "Two-factor" page: staff enrol (or replace) their own authenticator.

Only a session that reached the admin gets here, so with ADMIN_REQUIRE_2FA a
password alone can never enrol a device (that would defeat the setting); such
staff start with `manage.py enroll_totp`.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login

from reengage.security import two_factor


@require_http_methods(["GET", "POST"])
def two_factor_page(request: HttpRequest, admin_site) -> HttpResponse:
    user = request.user
    here = reverse(f"{admin_site.name}:two-factor")
    error = ""
    if request.method == "POST":
        if request.POST.get("action") == "start":
            two_factor.start_enrolment(user)
            return HttpResponseRedirect(here)
        if request.POST.get("action") == "cancel":
            if device := two_factor.pending_device(user):
                device.delete()
            return HttpResponseRedirect(here)
        try:
            device = two_factor.confirm_enrolment(user, request.POST.get("code", ""))
        except two_factor.EnrolmentError as exc:
            error = str(exc)
        else:
            otp_login(request, device)  # they just proved they hold it
            messages.success(request, "Two-factor is on: the admin login now asks for a code.")
            return HttpResponseRedirect(reverse(f"{admin_site.name}:index"))
    pending = two_factor.pending_device(user)
    context = {
        **admin_site.each_context(request),
        "title": "Two-factor authentication",
        "confirmed": two_factor.confirmed_device(user),
        "pending": pending,
        # qrcode's own SVG markup, built from our URI: nothing user-controlled in it.
        "qr_svg": mark_safe(two_factor.qr_svg(pending)) if pending else "",  # noqa: S308
        "secret": two_factor.secret_for_typing(pending) if pending else "",
        "error": error,
    }
    return TemplateResponse(request, "admin/two_factor.html", context)
