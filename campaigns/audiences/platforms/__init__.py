"""Delivery of audience joins and leaves to the ad platforms' own APIs.

`outbox` batches each destination's changes from the change log (its cursor over
AudienceChange ids), claims due batches and sends them through `http.send`, with
retries, dead letters and the dev inbox; `meta`, `google` and `ga4` write each
API's documented requests. Part of the audiences area: imports no other area.
"""

from campaigns.audiences.platforms.ga4 import GA4Events
from campaigns.audiences.platforms.google import GoogleCustomerMatch
from campaigns.audiences.platforms.meta import MetaConversions, MetaCustomAudience

PLATFORMS = {
    p.kind: p for p in (MetaConversions(), MetaCustomAudience(), GoogleCustomerMatch(), GA4Events())
}

__all__ = ["PLATFORMS"]
