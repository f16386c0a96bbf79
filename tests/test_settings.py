"""A malformed environment stops start-up with one clear line, not a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "REENGAGE_EMBEDDED_SERVICES": "0", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "mysql://root@localhost/app", "DATABASE_URL is malformed"),
        ("DATABASE_URL", "postgres://u:p@host:notaport/db", "DATABASE_URL is malformed"),
        ("DATABASE_URL", "postgres://u:p@host:5432/", "names no database"),
        ("REDIS_URL", "http://localhost:6379", "REDIS_URL is malformed"),
        ("DEBUG", "perhaps", "DEBUG='perhaps' is not a boolean"),
        ("EMAIL_PORT", "twenty-five", "EMAIL_PORT='twenty-five' is not a whole number"),
        (
            "EMAIL_SEND_TRANSPORT",
            "gevent",
            "EMAIL_SEND_TRANSPORT='gevent' must be one of: auto, threads",
        ),
    ],
)
def test_a_malformed_variable_gives_a_clear_error_naming_it(variable, value, message):
    result = run_manage("check", **{variable: value})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("reengage: configuration error:")


def test_production_requires_a_secret_key():
    result = run_manage("check", DEBUG="0", SECRET_KEY="")
    assert result.returncode == 2
    assert "SECRET_KEY must be set" in result.stderr
