"""The official Segment and RudderStack JavaScript SDKs, from the npm registry, for the tests.

tests/sdk/package.json and its package-lock.json pin the exact versions; they are
installed with `npm ci` into .data/npm/ (npm's cache in .data/npm/cache), once per
lock file: `make sdk-packages` (which .ci/run calls) or the first test that needs
them. Nothing is fetched when a test runs but from the npm registry by npm itself,
and the browser loads the SDK files from the tests' own local server.

Without npm the tests fail under CI=true and are skipped elsewhere, saying why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "sdk"
TARGET = ROOT / ".data" / "npm"
FILES = ("package.json", "package-lock.json")


class Unavailable(Exception):
    """npm is not installed, or the install failed."""


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in FILES:
        digest.update((SOURCE / name).read_bytes())
    return digest.hexdigest()


def install() -> Path:
    """Install the pinned packages unless this lock file's are there; their node_modules."""
    stamp = TARGET / ".installed"
    modules = TARGET / "node_modules"
    fingerprint = _fingerprint()
    if modules.is_dir() and stamp.exists() and stamp.read_text() == fingerprint:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not installed (apt-get install nodejs npm; .ci/run does)")
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(SOURCE / name, TARGET / name)
    # --ignore-scripts: none of these SDKs needs an install script to run (one only
    # prints a deprecation notice, an optional native msgpack build has a JS fallback).
    done = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--cache",
         str(TARGET / "cache")],
        cwd=TARGET, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise Unavailable(f"npm ci failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    stamp.write_text(fingerprint)
    return modules


def node_modules() -> Path:
    """For a test: the installed packages, or a failure (CI) / skip (elsewhere) that says why."""
    import pytest

    try:
        return install()
    except Unavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the SDK packages are required in CI: {exc}")
        pytest.skip(str(exc))


if __name__ == "__main__":
    try:
        print(install())
    except Unavailable as exc:
        sys.exit(str(exc))
