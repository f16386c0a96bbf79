"""The one door ad-platform requests go out through: the shared guarded client.

Every call the platforms module makes is `send()`, which is `reengage.outbound.request`:
https only (http only with OUTBOUND_ALLOW_HTTP, for the local stand-ins), public
addresses only, checked after DNS resolution and at connect time, no redirects (a
3xx is an answer like any other non-2xx), one deadline for the whole exchange, and at
most OUTBOUND_MAX_RESPONSE_BYTES of the answer read. The base URLs come from settings
(META_GRAPH_URL, GOOGLE_DATAMANAGER_URL, GA4_MP_URL, GOOGLE_OAUTH_TOKEN_URL), never
from a marketer, so the API's own error body may be kept and shown: the ids a
marketer types are validated and quoted into the path.
"""

from __future__ import annotations

from reengage import outbound

USER_AGENT = "reengage-ad-platforms/1"


def send(
    method: str, url: str, *, headers: dict[str, str], body: bytes | None, timeout: float
) -> tuple[int | None, dict[str, str], bytes]:
    """(status, lower-cased headers, body) — status None when no answer came
    (refused by the guard, connection refused, timeout, TLS); then the body says why."""
    response = outbound.request(
        method, url, body=body, headers={"User-Agent": USER_AGENT, **headers}, timeout=timeout
    )
    if response.status_code is None:
        return None, {}, response.error.encode()
    return response.status_code, response.headers, response.body
