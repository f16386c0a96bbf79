"""Audiences: who is in each retargeting audience, and getting that to ad platforms.

Membership rows with an expiry and a change log (`membership`, the only writer of
both), rules that fill audiences from events (`rules`), daily counts (`history`),
exports in ad-platform formats (`exports`), outgoing delivery of the change log to
signed webhooks (`delivery`), the pull API and on-site tag endpoint (`api`), and how
many members each ad platform can match (`reach`).

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
from campaigns.audiences.reach import Reach, audience_reach

__all__ = [
    "DayCount",
    "Reach",
    "add_members",
    "audience_reach",
    "leave_on_conversion",
    "leave_on_withdrawn_consent",
    "remove_profiles",
    "snippet_settings",
]
