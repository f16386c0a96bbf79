"""Loaded by pytest before Django's settings (see pyproject's addopts).

Starts or joins the embedded services when DATABASE_URL / REDIS_URL are unset,
then moves the tests to their own Redis database (TEST_REDIS_DB, default 15)
so a test run never touches the data of a running `make run`.
"""

import os
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reengage.settings")
os.environ.setdefault("DEBUG", "1")

if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
    from reengage import embedded

    embedded.configure_environment()

_parts = urlsplit(os.environ["REDIS_URL"])
os.environ["REDIS_URL"] = urlunsplit(
    _parts._replace(path="/" + os.environ.get("TEST_REDIS_DB", "15"))
)

# Temporary directories under this checkout: pytest removes old numbered temp
# dirs, which must not be another checkout's live ones (parallel worktrees).
_temproot = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".data", "pytest-tmp"
)
os.makedirs(_temproot, exist_ok=True)
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", _temproot)
