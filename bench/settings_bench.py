"""Settings for benchmarks: the real settings plus a bare baseline view."""

from reengage.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
