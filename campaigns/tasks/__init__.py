"""Celery tasks of the campaigns app (autodiscovered), one module per area."""

from campaigns.tasks import audiences, email, engine  # noqa: F401
