"""Build the served snippet from its commented source.

`static/reengage/reengage.src.js` is what people edit and read;
`static/reengage/reengage.js` is what sites load: the same code with comments and
whitespace removed by rjsmin (names are kept, so the served file stays readable
for a site owner who wants to check it). Both are committed, so serving the
snippet needs no build step; `tests/tracking/test_snippet_build.py` fails when the served
file is stale or its gzip outgrows the budget.

    python -m tracking.snippet_build      (or: make snippet)
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "static" / "reengage"
SOURCE = STATIC / "reengage.src.js"
TARGET = STATIC / "reengage.js"
# Bytes, gzipped at level 9 (what whitenoise serves): a snippet on every page of
# a customer's site must stay small.
GZIP_BUDGET = 4096


def build(source: str) -> str:
    import rjsmin  # a dev dependency: production serves the committed file

    return rjsmin.jsmin(source, keep_bang_comments=True) + "\n"


def gzipped_size(text: str) -> int:
    return len(gzip.compress(text.encode(), compresslevel=9, mtime=0))


def main() -> int:
    built = build(SOURCE.read_text())
    TARGET.write_text(built)
    size = gzipped_size(built)
    print(f"{TARGET.name}: {len(built.encode())} bytes, {size} gzipped (budget {GZIP_BUDGET})")
    if size > GZIP_BUDGET:
        print(f"over budget by {size - GZIP_BUDGET} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
