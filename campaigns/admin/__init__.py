"""Admin for the campaigns app, one module per area."""

from campaigns.admin import audiences, email, engine, privacy  # noqa: F401
