"""Start-up checks (`manage.py check`, and every runserver/migrate/worker start).

An email setting that the chosen ESP refuses would otherwise fail each message
of each campaign, one by one, hours later; here it is one line at start-up.
"""

from __future__ import annotations

import importlib.util

from django.conf import settings
from django.core import checks

from reengage import esp


@checks.register(checks.Tags.compatibility)
def check_email_fits_the_esp(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    backend = settings.EMAIL_BACKEND
    anymail = getattr(settings, "ANYMAIL", {})
    key = esp.esp_key(backend)
    if key is None:
        return []
    limits = esp.limits_for(backend, anymail)
    problems: list[checks.CheckMessage] = []
    if limits.needs_package and importlib.util.find_spec(limits.needs_package) is None:
        problems.append(
            checks.Error(
                f"EMAIL_BACKEND is {limits.name}, whose Anymail backend needs the "
                f"{limits.needs_package} package, which is not installed",
                hint=f"pip install 'reengage[{limits.extra}]' (from a checkout: pip install "
                f"'.[{limits.extra}]'; Docker: build with --build-arg EXTRAS={limits.extra})",
                id="reengage.E010",
            )
        )
    if limits.unsupported_because:
        problems.append(
            checks.Warning(
                f"EMAIL_BACKEND {backend} is not officially supported by Anymail any more",
                hint=limits.unsupported_because,
                id="reengage.W011",
            )
        )
    # With IGNORE_UNSUPPORTED_FEATURES Anymail drops what the ESP cannot take
    # instead of refusing the email, so nothing fails.
    if anymail.get("IGNORE_UNSUPPORTED_FEATURES"):
        return problems
    max_tags = settings.EMAIL_MAX_TAGS
    if limits.max_tags is not None and max_tags > limits.max_tags:
        problems.append(
            checks.Warning(
                f"EMAIL_MAX_TAGS={max_tags}, but {limits.name} accepts at "
                f"most {limits.max_tags} tag per email: Anymail would refuse every email",
                hint=f"set EMAIL_MAX_TAGS={limits.max_tags} or leave it unset (the "
                "default follows the ESP)",
                id="reengage.W012",
            )
        )
    if settings.EMAIL_SEND_METADATA and not limits.metadata:
        problems.append(
            checks.Warning(
                f"EMAIL_SEND_METADATA is on, but {limits.name} does not support metadata: "
                "Anymail would refuse every email",
                hint="set EMAIL_SEND_METADATA=0 or leave it unset (the default follows "
                "the ESP; webhooks then find the message by the ESP's message id)",
                id="reengage.W013",
            )
        )
    return problems
