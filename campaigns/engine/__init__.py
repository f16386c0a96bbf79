"""The campaign engine: who enters a campaign, and what happens to them at each step.

`enrollment` enrolls people as their events are stored (and exits them on goals);
`tick` claims due enrollments and writes what `rules` (pure functions, the clock
passed in) decided: an email, an audience membership, a reschedule or an exit.
`conditions`, `forms`, `describe` and `duplicate` serve the admin.

May import audiences (memberships are one of its outcomes). The names below are
what other areas may use.
"""

from campaigns.engine.enrollment import on_events_stored, on_profiles_merged

__all__ = ["on_events_stored", "on_profiles_merged"]
