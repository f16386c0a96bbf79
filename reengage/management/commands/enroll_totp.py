"""Enrol a staff user's authenticator app (TOTP) for the admin's two-factor login.

    manage.py enroll_totp alice             # prints a QR code and the otpauth:// URI
    manage.py enroll_totp alice --confirm 123456

The device counts only once confirmed with a code from the app, so a half-done
enrolment never locks anyone out; confirming replaces the user's previous
authenticator (one per user: the login form asks for a code, not a device). Devices are listed, and removed, in the admin
under "TOTP devices".
"""

from __future__ import annotations

import io

import qrcode
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = "Enrol an authenticator app (TOTP) for a staff user, then confirm it with a code."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator", help="a label for the device")
        parser.add_argument(
            "--confirm", metavar="CODE", help="the code the app shows, to confirm the device"
        )

    def handle(self, *args, username: str, name: str, confirm: str | None, **options) -> None:
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(username)
        except User.DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        if not user.is_staff:
            raise CommandError(f"{username} is not staff: two-factor applies to the admin only")
        if confirm is None:
            self.start(user, name)
        else:
            self.confirm(user, confirm.strip())

    def start(self, user, name: str) -> None:
        with transaction.atomic():
            # A new enrolment replaces one left unconfirmed.
            TOTPDevice.objects.filter(user=user, confirmed=False).delete()
            device = TOTPDevice.objects.create(user=user, name=name, confirmed=False)
        qr = qrcode.QRCode(border=2)
        qr.add_data(device.config_url)
        picture = io.StringIO()
        qr.print_ascii(out=picture, invert=True)
        self.stdout.write(picture.getvalue())
        self.stdout.write(
            f"Scan this with an authenticator app, or enter the URI:\n{device.config_url}\n"
        )
        self.stdout.write(
            f"Then confirm with: manage.py enroll_totp {user.get_username()} --confirm CODE"
        )

    def confirm(self, user, code: str) -> None:
        device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
        if device is None:
            raise CommandError(
                f"{user.get_username()} has no enrolment waiting: run "
                f"`manage.py enroll_totp {user.get_username()}` first"
            )
        if not device.verify_token(code):
            raise CommandError(
                "that code does not match: check the phone's clock and enter the current code"
            )
        with transaction.atomic():
            # One authenticator per user: a new phone replaces the old one.
            TOTPDevice.objects.filter(user=user, confirmed=True).delete()
            device.confirmed = True
            device.save(update_fields=["confirmed"])
        self.stdout.write(
            f"{user.get_username()}: two-factor is on; the admin login now asks for a code."
        )
