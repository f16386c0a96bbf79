"""The one place that connects campaigns to tracking (and to Anymail's signals).

tracking knows nothing of campaigns: it sends `events_stored` and
`profiles_merged` inside the flusher's transaction (tracking.signals), and
campaigns listens here. A receiver's writes commit or roll back with the events
it reacts to, so an event is never stored without what it causes, and a replayed
batch (deduplicated by the flusher) causes nothing twice.

Receivers of one signal run in the order they are connected, which is the order
below, and the order matters:

`events_stored`
  1. audiences: people whose new events refuse advertising or carry GPC leave
     every audience (before anything could add them again in this batch);
  2. email: Order Completed events are credited to the email clicked or opened
     before them (attribution reads the events, writes nothing the engine reads);
  3. engine: enroll on triggers, push inactivity timers, exit on goals (and leave
     the audiences that drop members on conversion).

`profiles_merged`
  engine: the merged-away profiles' enrollments move to the survivor.

Anymail's `tracking` signal (ESP webhooks) goes to email's feedback.

Each receiver's dispatch_uid is stable, so `connect()` is safe to call twice.
"""

from __future__ import annotations


def connect() -> None:
    """Called from CampaignsConfig.ready()."""
    from anymail.signals import tracking as esp_tracking

    from campaigns import audiences, email, engine
    from tracking import views as tracking_views
    from tracking.signals import events_stored, profiles_merged

    events_stored.connect(
        audiences.leave_on_withdrawn_consent, dispatch_uid="campaigns.audiences.consent"
    )
    events_stored.connect(email.on_orders_stored, dispatch_uid="reengage.email.attribution")
    events_stored.connect(engine.on_events_stored, dispatch_uid="campaigns.enroll")
    profiles_merged.connect(engine.on_profiles_merged, dispatch_uid="campaigns.merge")
    esp_tracking.connect(email.on_tracking_event, dispatch_uid="reengage.email.tracking")

    # The snippet's settings answer names the audience tag script for sites with tags.
    if audiences.snippet_settings not in tracking_views.SETTINGS_EXTENSIONS:
        tracking_views.SETTINGS_EXTENSIONS.append(audiences.snippet_settings)
