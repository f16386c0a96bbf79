"""The browser snippet's server side: the loader to paste, and the no-JS pixel.

The script itself is a static file (static/reengage/reengage.js, built from
reengage.src.js by tracking.snippet_build). In production whitenoise's
CompressedManifestStaticFilesStorage gives it a content-hashed name served with
an immutable, year-long cache; `script_url` returns that name.
"""

from __future__ import annotations

import json
import logging
import uuid
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.templatetags.static import static
from django.utils.html import escape
from django.views.decorators.http import require_safe

from tracking import buffer
from tracking.ingest import IngestError
from tracking.keys import client_ip, lookup_key, url_host
from tracking.models import Site
from tracking.views import record

log = logging.getLogger(__name__)

SCRIPT = "reengage/reengage.js"
PIXEL_LIBRARY = {"name": "reengage-pixel", "version": "1"}
# The smallest transparent GIF browsers accept: 1x1, one transparent colour.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
UTM = {
    "source": "source",
    "medium": "medium",
    "campaign": "name",
    "term": "term",
    "content": "content",
}


def script_url(public_url: str) -> str:
    """The absolute URL of the current script (hashed in production)."""
    # An absolute STATIC_URL (a CDN) wins over the public URL.
    return urljoin(public_url.rstrip("/") + "/", static(SCRIPT))


def _js(value: object) -> str:
    """A JSON literal that is safe inside an HTML <script> element."""
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def loader_html(site: Site, public_url: str) -> str:
    """The snippet a site owner pastes before </head> on every page.

    Line 1 defines the queue stub (calls made before the script arrives are
    kept and replayed), initialises, records the page view, and loads the
    script without blocking the page. Line 2 is the pixel for browsers
    without JavaScript.
    """
    api = public_url.rstrip("/")
    pixel = f"{api}/v1/p.gif?{urlencode({'k': site.write_key})}"
    return (
        "<script>window.reengage=window.reengage||function(){"
        "(reengage.q=reengage.q||[]).push(arguments)};"
        f"reengage('init',{_js(site.write_key)},{{api:{_js(api)}}});reengage('page');</script>"
        f'<script async src="{escape(script_url(api))}"></script>\n'
        f'<noscript><img src="{escape(pixel)}" width="1" height="1" alt="" '
        'style="position:absolute"></noscript>'
    )


@require_safe
def stale_script(request: HttpRequest) -> HttpResponse:
    """A hashed script name from an older release → the current one.

    Each release's image holds only the current hashed file, but loaders pasted
    into customers' pages keep the name they were given. The redirect is cached
    briefly, since the next release moves the target again.
    """
    response = HttpResponseRedirect(static(SCRIPT))
    response["Cache-Control"] = "public, max-age=3600"
    return response


def _gif() -> HttpResponse:
    response = HttpResponse(GIF, content_type="image/gif")
    # Every load must reach us to be counted; and pages with COEP may embed it.
    response["Cache-Control"] = "no-store, max-age=0"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@require_safe
def pixel(request: HttpRequest) -> HttpResponse:
    """`GET /v1/p.gif?k=<writeKey>[&url=&ref=&title=&aid=&mid=]`: a page view without JS.

    Always answers the GIF: a broken image on a customer's page helps nobody,
    so every refusal is logged instead.
    """
    if request.method == "GET":
        try:
            record_pixel(request)
        except Exception:  # never visible to the page; the log has the traceback
            log.exception("pixel: could not record a page view")
    return _gif()


def record_pixel(request: HttpRequest) -> bool:
    """Record the pixel's page view through the ingest pipeline. True if accepted."""
    params = request.GET
    # GPC means "do not sell or share"; remarketing is that.
    if request.headers.get("Sec-GPC") == "1":
        return False
    write_key = params.get("k", "")
    key = lookup_key(write_key)
    if key is None:
        log.info("pixel: unknown write key %r", write_key[:40])
        return False
    if key.trusted:
        # A secret key pasted into a page is leaked already; it must not gain
        # server-side powers (verified emails, stated IPs) from an <img>.
        log.warning("pixel: site %s used its secret key in a pixel; ignored", key.site_id)
        return False
    referer = request.headers.get("Referer", "")
    # An <img> sends no Origin header; the Referer's host stands in for it.
    referer_host = url_host(referer)
    if referer_host is None:
        log.info("pixel: site %s, unparsable Referer %r", key.site_id, referer[:100])
        return False
    if referer_host and not key.allows_origin(referer_host):
        log.info("pixel: site %s, %s is not an allowed domain", key.site_id, referer_host)
        return False
    if key.consent_mode == Site.ConsentMode.OPT_IN:
        # Without JavaScript the visitor has no way to consent.
        log.debug("pixel: site %s is opt-in; nothing recorded", key.site_id)
        return False

    url = params.get("url") or referer
    try:
        parts = urlsplit(url)
    except ValueError:
        log.info("pixel: site %s, unparsable url %r", key.site_id, url[:100])
        return False
    page = {
        "url": url,
        "path": parts.path,
        "search": f"?{parts.query}" if parts.query else "",
        "referrer": params.get("ref", ""),
        "title": params.get("title", ""),
    }
    campaign = {
        UTM[name[4:]]: value
        for name, value in parse_qsl(parts.query)
        if name.startswith("utm_") and name[4:] in UTM
    }
    call = {
        "type": "page",
        "messageId": params.get("mid") or str(uuid.uuid4()),
        # Without a cookie each view is its own visitor, unless the page says who.
        "anonymousId": params.get("aid") or str(uuid.uuid4()),
        "properties": page,
        "context": {
            "page": page,
            "campaign": campaign,
            "userAgent": request.headers.get("User-Agent", ""),
            "library": PIXEL_LIBRARY,
        },
    }
    try:
        events = record(call, key=key, ip=client_ip(request), single_type="page")
    except IngestError as exc:
        log.info("pixel: site %s, refused %s: %s", key.site_id, exc.field, exc.message)
        return False
    except (buffer.RateLimited, buffer.StorageUnavailable) as exc:
        # An image cannot be retried; the loss is logged.
        log.warning("pixel: site %s, page view lost: %r", key.site_id, exc)
        return False
    return bool(events)
