"""Signals other apps use to react to stored events, without tracking knowing them.

Both are sent *inside* the flusher's transaction, so a receiver's writes commit
(or roll back) together with the events: an event is never stored without the
enrollments it triggers, and never enrolls twice.
"""

from django.dispatch import Signal

# kwargs: table: the name of a temporary table holding exactly the newly stored
#         (deduplicated) events: (id, site_id, profile_id, type, name, anonymous_id,
#         user_id, timestamp, properties); receivers read it with set-based SQL.
#         count: its number of rows; now: datetime (the flush time)
events_stored = Signal()

# kwargs: site_id: int, survivor_id: int, merged_ids: list[int]
profiles_merged = Signal()
