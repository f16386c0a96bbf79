"""Audiences: who is in each retargeting audience, and getting that to ad platforms.

Membership rows with an expiry and a change log (`membership`, the only writer of
both), rules that fill audiences from events (`rules`), daily counts (`history`),
exports in ad-platform formats (`exports`), outgoing delivery of the change log to
signed webhooks (`delivery`), and the pull API and on-site tag endpoint (`api`).

Imports no other area. The names below are what other areas may use.
"""

from campaigns.audiences.api import snippet_settings
from campaigns.audiences.history import DayCount
from campaigns.audiences.membership import (
    add_members,
    leave_on_conversion,
    leave_on_withdrawn_consent,
    remove_profiles,
)

__all__ = [
    "DayCount",
    "add_members",
    "leave_on_conversion",
    "leave_on_withdrawn_consent",
    "remove_profiles",
    "snippet_settings",
]
