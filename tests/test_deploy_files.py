"""docker-compose.yml, the image entrypoint and .env.example are right by construction
(Docker does not run here, so what can be checked outside it is checked here)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from reengage.pg_tuning import WRITE_TUNING

ROOT = Path(__file__).resolve().parent.parent
TEST_ONLY = {"REENGAGE_FAULT_FLUSH_PAUSE_BEFORE_ACK"}


def variables_read_by_the_code() -> set[str]:
    pattern = re.compile(
        r'(?:env_(?:str|bool|int|list)|database_config|redis_url|os\.environ\.get)\(\s*"([A-Z0-9_]+)"'
    )
    names = set()
    for path in [*ROOT.glob("reengage/*.py"), *ROOT.glob("tracking/*.py"),
                 *ROOT.glob("campaigns/**/*.py")]:  # fmt: skip
        names |= set(pattern.findall(path.read_text()))
    return names - TEST_ONLY


def variables_in_env_example() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def test_every_variable_the_code_reads_is_documented_in_env_example():
    missing = variables_read_by_the_code() - variables_in_env_example()
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_compose_runs_the_production_shape_from_one_image():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"proxy", "postgres", "redis", "web", "worker", "beat"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    for name in ("web", "worker", "beat"):
        assert services[name]["build"] == "."
        assert services[name]["env_file"] == ".env"
        assert services[name]["command"] == [name]
        assert "REDIS_URL" in services[name]["environment"]


def test_compose_publishes_only_the_proxy_with_the_tested_caddyfile():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:2.6")  # the version tests/test_slow_clients.py runs
    assert "./docker/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert proxy["environment"]["UPSTREAM"] == "web:8000"
    assert services["web"]["environment"]["TRUSTED_PROXY_HEADER"] == "HTTP_X_FORWARDED_FOR"


def test_the_caddyfile_is_valid_for_caddy():
    import shutil

    caddy = shutil.which("caddy")
    if caddy is None:
        if os.environ.get("CI"):
            pytest.fail("caddy is not installed (.ci/run installs Debian's caddy)")
        pytest.skip("caddy is not installed")
    result = subprocess.run(
        [caddy, "validate", "--config", str(ROOT / "docker" / "Caddyfile"), "--adapter",
         "caddyfile"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "SITE_ADDRESS": "reengage.example.com", "UPSTREAM": "web:8000"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_every_variable_compose_interpolates_is_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    assert used, "no ${VAR} found: the pattern is wrong"
    missing = used - variables_in_env_example()
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_compose_postgres_runs_with_the_shipped_write_tuning():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    command = services["postgres"]["command"]
    assert command[0] == "postgres"
    flags, values = command[1::2], command[2::2]
    assert flags == ["-c"] * len(values) and len(command) % 2 == 1
    settings = dict(value.split("=", 1) for value in values)
    # shared_buffers is overridable from .env; its default is the shipped value.
    shared_buffers = WRITE_TUNING["shared_buffers"]
    assert settings["shared_buffers"] == f"${{POSTGRES_SHARED_BUFFERS:-{shared_buffers}}}"
    assert {**settings, "shared_buffers": shared_buffers} == WRITE_TUNING
    env_example = (ROOT / ".env.example").read_text()
    assert f"\nPOSTGRES_SHARED_BUFFERS={shared_buffers}\n" in env_example


def test_the_entrypoint_knows_each_command_compose_uses():
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    for command in ("web)", "worker)", "beat)", "migrate)", "manage)"):
        assert command in script
    result = subprocess.run(["sh", "-n", str(ROOT / "docker" / "entrypoint.sh")])
    assert result.returncode == 0


def test_the_entrypoint_runs_manage_commands():
    import sys

    # In the image `python` is the image's; here, the test's interpreter.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "REENGAGE_EMBEDDED_SERVICES": "0", "PATH": path}
    result = subprocess.run(
        ["sh", "docker/entrypoint.sh", "manage", "check"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
