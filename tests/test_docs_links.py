"""The README and docs/ link to files and headings that exist, and their screenshots stay small."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
MAX_IMAGE_BYTES = 300 * 1024


def prose(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """GitHub's ids for the page's headings: lower case, punctuation dropped, spaces to '-'."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in prose(page)
        if line.startswith("#")
    }


def local_links(page: Path) -> list[str]:
    return [
        target
        for line in prose(page)
        for target in LINK.findall(line)
        if not re.match(r"[a-z]+:", target)
    ]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_local_link_reaches_a_file_and_heading(page):
    broken = []
    for target in local_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_screenshot_is_shown_somewhere_and_small():
    shown = {(page.parent / target).resolve() for page in PAGES for target in local_links(page)}
    for image in sorted((ROOT / "docs" / "img").glob("*.png")):
        assert image.resolve() in shown, f"{image.name} is in docs/img/ but no page shows it"
        assert image.stat().st_size <= MAX_IMAGE_BYTES, f"{image.name} is over 300 KB"
