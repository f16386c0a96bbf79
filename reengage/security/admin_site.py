"""The admin site: django-otp's `OTPAdminSite` semantics for the staff who need them.

A staff user who has a confirmed TOTP device (or everyone, with
`ADMIN_REQUIRE_2FA`) must give a code at login, and a session that was not
verified with a device does not reach the admin. Staff without a device log in
with their password alone, unless the setting forces two-factor.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_otp import user_has_device
from django_otp.forms import OTPAuthenticationFormMixin
from django_otp.plugins.otp_totp.models import TOTPDevice


def needs_second_factor(user) -> bool:
    return settings.ADMIN_REQUIRE_2FA or user_has_device(user, confirmed=True)


class LoginForm(OTPAuthenticationFormMixin, AdminAuthenticationForm):
    otp_token = forms.CharField(
        required=False,
        label="Two-factor code",
        help_text="The 6-digit code from your authenticator app, if you enrolled one.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8}
        ),
    )
    otp_error_messages = {
        **OTPAuthenticationFormMixin.otp_error_messages,
        "token_required": "Enter the 6-digit code from your authenticator app.",
        "invalid_token": "That two-factor code is wrong or expired; enter the current one.",
    }

    def clean(self):
        cleaned = super().clean()
        user = self.get_user()
        if user is not None and needs_second_factor(user):
            if not user_has_device(user, confirmed=True):
                raise ValidationError(
                    f"Two-factor authentication is required (ADMIN_REQUIRE_2FA) and "
                    f"{user.get_username()} has no authenticator yet: an operator runs "
                    f"`manage.py enroll_totp {user.get_username()}` to add one.",
                    code="no_device",
                )
            self.clean_otp(user)
        return cleaned

    def _chosen_device(self, user):
        # One authenticator per user (`enroll_totp` replaces the old one on
        # confirmation), so the form asks for a code, not for a device.
        return TOTPDevice.objects.devices_for_user(user, confirmed=True).order_by("-id").first()


class AdminSite(admin.AdminSite):
    login_form = LoginForm
    login_template = "admin/reengage_login.html"

    def get_urls(self):
        from django.urls import path

        from reengage.security.views import two_factor_page

        page = self.admin_view(lambda request: two_factor_page(request, self))
        return [path("two-factor/", page, name="two-factor"), *super().get_urls()]

    # The index and the sidebar: what marketers use first (campaigns and email, then
    # people and sites), the machinery a superuser also sees (users, login
    # throttling, two-factor devices, the theme) after it.
    APP_ORDER = ("campaigns", "tracking", "auth", "axes", "otp_totp", "admin_interface")

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = super().get_app_list(request, app_label)
        rank = {label: n for n, label in enumerate(self.APP_ORDER)}
        return sorted(apps, key=lambda app: (rank.get(app["app_label"], len(rank)), app["name"]))

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        return request.user.is_verified() or not needs_second_factor(request.user)
