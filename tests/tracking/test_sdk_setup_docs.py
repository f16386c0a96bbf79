"""docs/site-owners.md shows each SDK's setup exactly as the install page renders it,
which is the text tests/tracking/test_sdk_browser.py and tests/tracking/test_sdk_node.py run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracking.install import SDKS, sdk_snippets

ROOT = Path(__file__).resolve().parents[2]
DOCS_API = "https://reengage.example.com"
DOCS_WRITE_KEY = "wk_…"


@pytest.mark.parametrize("snippet", sdk_snippets(DOCS_API, DOCS_WRITE_KEY), ids=lambda s: s.key)
def test_site_owners_md_shows_the_setup_the_install_page_renders(snippet):
    docs = (ROOT / "docs" / "site-owners.md").read_text()
    language = "html" if snippet.where == "browser" else "js"
    assert f"```{language}\n{snippet.code}```\n" in docs, (
        f"docs/site-owners.md is missing the {snippet.label} setup; paste:\n{snippet.code}"
    )


def test_every_sdk_on_the_install_page_is_pinned_for_the_tests():
    import json

    pinned = json.loads((ROOT / "tests" / "sdk" / "package.json").read_text())["dependencies"]
    assert {package for _, _, _, package, _ in SDKS} == set(pinned)


def test_the_analytics_js_setup_splits_the_host_from_the_scheme():
    [segment] = [
        s for s in sdk_snippets("http://localhost:8123/", "wk_1") if s.key == "analytics-next"
    ]
    assert 'apiHost: "localhost:8123/v1", protocol: "http"' in segment.code


def test_api_md_lists_exactly_the_headers_a_preflight_may_allow():
    import re

    from tracking.views import ALLOWED_REQUEST_HEADERS

    api = (ROOT / "docs" / "api.md").read_text()
    section = api.split("### Official SDKs", 1)[1].split("\n### ", 1)[0]
    listed = section.split("allow-list, and no others:", 1)[1].split(". The", 1)[0]
    assert {name.lower() for name in re.findall(r"`([^`]+)`", listed)} == ALLOWED_REQUEST_HEADERS
