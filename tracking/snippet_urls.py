"""The snippet's routes, included from reengage/urls.py."""

import re

from django.conf import settings
from django.urls import path, re_path

from tracking import snippet

urlpatterns = [
    path("v1/p.gif", snippet.pixel, name="pixel"),
]

# Old hashed script names redirect to the current one (see snippet.stale_script);
# only when this app serves the static files itself, not when a CDN does.
if settings.STATIC_URL.startswith("/"):
    _prefix = re.escape(settings.STATIC_URL.lstrip("/") + "reengage/reengage.")
    urlpatterns.append(
        re_path(rf"^{_prefix}[0-9a-f]{{12}}\.js$", snippet.stale_script, name="snippet-stale")
    )
