"""The served snippet is the build of its source, and stays small."""

from __future__ import annotations

import gzip
import urllib.request

from django.templatetags.static import static

from tracking.snippet import SCRIPT
from tracking.snippet_build import GZIP_BUDGET, SOURCE, TARGET, build, gzipped_size


def test_the_served_script_is_the_build_of_its_source():
    # Edited reengage.src.js without `make snippet`? This fails until you run it.
    assert TARGET.read_text() == build(SOURCE.read_text())


def test_the_served_script_gzips_to_at_most_4_kib(live_server):
    with urllib.request.urlopen(live_server.url + static(SCRIPT), timeout=10) as response:
        body = response.read()
    assert body == TARGET.read_bytes()
    assert len(gzip.compress(body, compresslevel=9)) <= GZIP_BUDGET == 4096


def test_the_build_keeps_the_licence_comment_and_drops_the_others():
    built = build("/*! keep */\n// drop\nvar a = 1; /* drop */\n")
    assert built.startswith("/*! keep */") and "drop" not in built
    assert gzipped_size(built) < 100
