"""Celery tasks of the campaigns app (autodiscovered), one module per area."""

from campaigns.tasks import audiences, email, engine, privacy, reports  # noqa: F401
