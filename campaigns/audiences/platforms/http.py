"""The one door ad-platform requests go out through.

Every call the platforms module makes is `send()`: no redirects (a 3xx is an
answer like any other non-2xx), a timeout, and at most MAX_RESPONSE_BYTES of the
answer read. It is small on purpose, so it can be pointed at the shared guarded
client (reengage/outbound.py: https only, public addresses only) once that lands.
The base URLs come from settings (META_GRAPH_URL, GOOGLE_DATAMANAGER_URL,
GA4_MP_URL, GOOGLE_OAUTH_TOKEN_URL), never from a marketer: the ids a marketer
types are validated and quoted into the path.
"""

from __future__ import annotations

import urllib.error
import urllib.request

MAX_RESPONSE_BYTES = 256 * 1024
USER_AGENT = "reengage-ad-platforms/1"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def send(
    method: str, url: str, *, headers: dict[str, str], body: bytes | None, timeout: float
) -> tuple[int | None, dict[str, str], bytes]:
    """(status, lower-cased headers, body) — status None when no answer came
    (connection refused, timeout, TLS); then the body says why."""
    request = urllib.request.Request(  # noqa: S310 (scheme fixed by settings, see above)
        url, data=body, headers={"User-Agent": USER_AGENT, **headers}, method=method
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            return (response.status, _headers(response.headers),
                    response.read(MAX_RESPONSE_BYTES))  # fmt: skip
    except urllib.error.HTTPError as exc:
        try:
            content = exc.read(MAX_RESPONSE_BYTES)
        except OSError:
            content = b""
        return exc.code, _headers(exc.headers), content
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, {}, f"{type(exc).__name__}: {reason}".encode()[:500]


def _headers(message) -> dict[str, str]:
    return {k.lower(): v for k, v in (message.items() if message else [])}
