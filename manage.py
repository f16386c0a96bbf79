#!/usr/bin/env python
"""Django's command-line utility for reengage."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reengage.settings")
    from django.core.management import execute_from_command_line

    from reengage.env import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        # A malformed environment variable: one clear line, no traceback.
        print(f"reengage: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
