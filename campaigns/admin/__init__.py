"""Admin for the campaigns app, one module per area."""

from campaigns.admin import audiences, email, engine, people, privacy  # noqa: F401
