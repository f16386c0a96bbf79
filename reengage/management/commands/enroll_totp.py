"""Enrol a staff user's authenticator app (TOTP) for the admin's two-factor login.

    manage.py enroll_totp alice             # prints a QR code and the otpauth:// URI
    manage.py enroll_totp alice --confirm 123456

Staff can also enrol themselves on the admin's "Two-factor" page; with
ADMIN_REQUIRE_2FA on, staff without a device cannot reach the admin, so this
command is how they start. See reengage/security/two_factor.py.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from reengage.security import two_factor


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
            device = two_factor.start_enrolment(user, name)
            self.stdout.write(two_factor.qr_text(device))
            self.stdout.write(
                f"Scan this with an authenticator app, or enter the URI:\n{device.config_url}\n"
            )
            self.stdout.write(f"Then confirm with: manage.py enroll_totp {username} --confirm CODE")
            return
        try:
            two_factor.confirm_enrolment(user, confirm)
        except two_factor.EnrolmentError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{username}: two-factor is on; the admin login now asks for a code.")
