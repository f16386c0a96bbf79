"""Email: the remarketing email from the outbox row to the person's inbox and back.

Composing (variant, promo code, headers), rendering in the template sandbox,
sending through Anymail exactly once (`sending`), link tokens, unsubscribe and
preferences, ESP webhooks and our own click/open tracking (`feedback`), order
attribution, the public email endpoints (`views`, `urls`) and the development
mailbox (`devmail`).

Imports no other area. The names below are what other areas may use.
"""

from campaigns.email.attribution import on_orders_stored
from campaigns.email.feedback import on_tracking_event

__all__ = ["on_orders_stored", "on_tracking_event"]
