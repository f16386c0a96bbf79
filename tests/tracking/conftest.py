"""Fixtures and helpers shared by the tracking tests."""

from __future__ import annotations

import html
import re

import pytest

from tracking import buffer, flush


@pytest.fixture
def stream(redis_client):
    """The events stream with the flusher's consumer group, on the tests' Redis."""
    flush.ensure_group(redis_client)
    return redis_client


@pytest.fixture
def lost_acknowledgement():
    """The next request whose events were buffered is answered 503 (tracking.buffer)."""
    buffer.LOST_ACKNOWLEDGEMENTS.count = 1
    yield buffer.LOST_ACKNOWLEDGEMENTS
    buffer.LOST_ACKNOWLEDGEMENTS.count = 0


def copied_setup(admin_client, site, key: str) -> str:
    """An SDK's setup as the install page's Copy button takes it."""
    page = admin_client.get(f"/admin/tracking/site/{site.id}/install/").text
    match = re.search(rf'<pre id="copy-sdk-{key}"><code>(.*?)</code></pre>', page, re.S)
    assert match, f"no {key} setup on the install page"
    return html.unescape(match.group(1))
