"""Enrolling a staff user's authenticator app (TOTP): start, then confirm with a code.

Used by `manage.py enroll_totp` and the admin's "Two-factor" page. A device counts
only once confirmed, so a half-done enrolment never locks anyone out; confirming
replaces the user's previous authenticator (one per user: the login form asks
for a code, not for a device).
"""

from __future__ import annotations

import base64

import qrcode
import qrcode.image.svg
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice


class EnrolmentError(Exception):
    pass


def start_enrolment(user, name: str = "authenticator") -> TOTPDevice:
    with transaction.atomic():
        # A new enrolment replaces one left unconfirmed.
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name=name, confirmed=False)


def pending_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()


def confirmed_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("-id").first()


def confirm_enrolment(user, code: str) -> TOTPDevice:
    device = pending_device(user)
    if device is None:
        raise EnrolmentError(
            f"{user.get_username()} has no enrolment waiting: start one first "
            f"(`manage.py enroll_totp {user.get_username()}`)"
        )
    if not device.verify_token(code.strip()):
        raise EnrolmentError(
            "that code does not match: check the phone's clock and enter the current code"
        )
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=True).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return device


def secret_for_typing(device: TOTPDevice) -> str:
    """The key as authenticator apps take it when typed in (base32, in groups of 4)."""
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_svg(device: TOTPDevice) -> str:
    """The otpauth:// URI as an inline SVG QR code (no script, no external image)."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")


def qr_text(device: TOTPDevice) -> str:
    import io

    qr = qrcode.QRCode(border=2)
    qr.add_data(device.config_url)
    picture = io.StringIO()
    qr.print_ascii(out=picture, invert=True)
    return picture.getvalue()
