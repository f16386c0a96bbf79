"""Credit Order Completed events to the email clicked (or opened) before them.

Runs inside the flusher's transaction (the `events_stored` signal), set-based
over the temporary table of just-stored events: one INSERT for the whole batch.
For each order, the latest message of the same person and site whose click
(or open, where the site counts opens) falls within the site's attribution
window before the order gets the credit, with the order's revenue. The unique
key on the order's event id makes a second credit impossible.

Revenue is a number the caller states. The write key is public, so an order sent
from a browser is credited as a conversion but carries revenue only where the
site allows it (`Site.browser_order_revenue`, off by default): otherwise only
orders sent with the secret key (`trust` 2, tracking.trust) carry revenue.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from psycopg2 import sql

from tracking import trust

# Revenue: the first numeric of revenue / total / value, as the Segment spec
# allows; anything non-numeric counts as no revenue instead of failing the flush.
# (A psycopg2.sql template: literal braces are doubled.)
ATTRIBUTE = """
INSERT INTO campaigns_attribution
    (site_id, message_id, event_id, ordered_at, revenue, currency, created_at)
SELECT DISTINCT ON (s.id)
    s.site_id, m.id, s.id, s.timestamp,
    CASE WHEN s.trust = %(secret_key_trust)s OR site.browser_order_revenue THEN
    (SELECT round((v #>> '{{}}')::numeric, 2)
       FROM (VALUES (s.properties -> 'revenue'), (s.properties -> 'total'),
                    (s.properties -> 'value')) AS candidates(v)
      WHERE jsonb_typeof(v) = 'number'
         OR (jsonb_typeof(v) = 'string' AND (v #>> '{{}}') ~ '^-?[0-9]{{1,12}}(\\.[0-9]+)?$')
      LIMIT 1)
    END,
    left(upper(coalesce(s.properties ->> 'currency', '')), 3),
    %(now)s
FROM {table} s
JOIN campaigns_message m ON m.profile_id = s.profile_id AND m.site_id = s.site_id
JOIN tracking_site site ON site.id = s.site_id
LEFT JOIN campaigns_emailsettings es ON es.site_id = s.site_id
CROSS JOIN LATERAL (
    SELECT GREATEST(
        m.clicked_at,
        CASE WHEN coalesce(es.attribute_opens, false) THEN m.opened_at END
    ) AS touched_at
) t
WHERE s.type = 'track' AND s.name = 'Order Completed'
  AND t.touched_at <= s.timestamp
  AND t.touched_at > s.timestamp - make_interval(days => coalesce(es.attribution_days, 5))
ORDER BY s.id, t.touched_at DESC
ON CONFLICT (event_id) DO NOTHING
"""


def attribute_orders(table: str, *, now: datetime) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(ATTRIBUTE).format(table=sql.Identifier(table)),
            {"now": now, "secret_key_trust": trust.SECRET},
        )
        return cursor.rowcount


def on_orders_stored(sender, table: str = "_stored", now: datetime | None = None, **kwargs):
    from django.utils import timezone

    if table != "_stored":  # only the flusher's own temporary table is trusted SQL
        return
    attribute_orders(table, now=now or timezone.now())
