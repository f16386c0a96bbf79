"""Retake the screenshots in docs/img/ (`make screenshots`).

They are the key screens of the end-to-end test (tests/test_workspace_e2e_browser.py):
the walkthrough in docs/getting-started.md shows exactly what the test clicked
through, so the pictures follow the admin's look whenever they are retaken.
This runs that one test with its artifacts in a temporary directory, then copies
the screens into docs/img/ without their order prefix ("03-campaign-form.png" →
"campaign-form.png"). The test needs what `make test` needs: PostgreSQL, Redis
(embedded when DATABASE_URL / REDIS_URL are unset) and /usr/bin/chromium.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/test_workspace_e2e_browser.py"
TARGET = ROOT / "docs" / "img"
# Docs pictures stay small: a 1280×800 admin page is well under this as PNG.
MAX_BYTES = 300 * 1024


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="reengage-screens-") as artifacts:
        env = {**os.environ, "TEST_ARTIFACTS_DIR": artifacts}
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", TEST], cwd=ROOT, env=env)
        if run.returncode != 0:
            print(f"{TEST} failed: docs/img/ left as it was", file=sys.stderr)
            return run.returncode
        screens = sorted((Path(artifacts) / "workspace").glob("*.png"))
        TARGET.mkdir(parents=True, exist_ok=True)
        too_big = []
        for screen in screens:
            target = TARGET / re.sub(r"^\d+-", "", screen.name)
            shutil.copyfile(screen, target)
            size = target.stat().st_size
            print(f"{target.relative_to(ROOT)}  {size // 1024} KB")
            if size > MAX_BYTES:
                too_big.append(target.name)
    if too_big:
        print(
            f"over {MAX_BYTES // 1024} KB, shrink the screen: {', '.join(too_big)}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
