"""The directions between campaigns' areas (docs/architecture.md) are enforced by
`make lint` (import-linter, configured in pyproject.toml): these tests show the
check passes on the code as it is and fails when an area imports against them."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=tree, capture_output=True, text=True,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, timeout=120,
    )  # fmt: skip


def copy_of_the_code(tmp_path: Path) -> Path:
    for package in ("tracking", "campaigns", "reengage"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_code_keeps_every_written_direction():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_email_importing_the_engine_breaks_the_lint(tmp_path):
    tree = copy_of_the_code(tmp_path)
    add_line(tree / "campaigns/email/sending.py", "from campaigns import engine  # noqa")
    result = lint(tree)
    assert result.returncode == 1
    assert "email imports no other area BROKEN" in result.stdout


def test_an_area_reaching_into_another_areas_module_breaks_the_lint(tmp_path):
    tree = copy_of_the_code(tmp_path)
    add_line(tree / "campaigns/engine/tick.py",
             "from campaigns.audiences.membership import remove_members  # noqa")  # fmt: skip
    result = lint(tree)
    assert result.returncode == 1
    assert "audiences's modules are imported only by audiences" in result.stdout
    assert "campaigns.engine.tick -> campaigns.audiences.membership" in result.stdout


def test_tracking_importing_campaigns_breaks_the_lint(tmp_path):
    tree = copy_of_the_code(tmp_path)
    add_line(tree / "tracking/views.py", "import campaigns.models  # noqa")
    result = lint(tree)
    assert result.returncode == 1
    assert "tracking never imports campaigns" in result.stdout
