"""createsite and seed_demo, run in a second terminal, print the URLs of the server that
runs: PUBLIC_URL if set, else PORT, else the port a running `make run` recorded, else 8000.

The commands run as real subprocesses (settings are read at start-up) on the test
database; a live `manage.py devserver` is replaced by its record, written by a
process that is alive (this one) or dead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, child_env

pytestmark = pytest.mark.django_db(transaction=True)


def manage(*args: str, data_dir, **env: str) -> str:
    environment = child_env(REENGAGE_DATA_DIR=str(data_dir), DEBUG="1", **env)
    for name in ("PORT", "PUBLIC_URL"):
        if name not in env:
            environment.pop(name, None)
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def createsite(data_dir, **env: str) -> str:
    return manage("createsite", "Second terminal", "--domain", "shop.test", data_dir=data_dir,
                  **env)  # fmt: skip


def record_devserver(data_dir, port: int, pid: int) -> None:
    (data_dir / "devserver.json").write_text(json.dumps({"port": port, "pid": pid}))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_createsite_uses_the_port_of_the_running_dev_server(tmp_path):
    record_devserver(tmp_path, 9123, os.getpid())
    out = createsite(tmp_path)
    assert "http://127.0.0.1:9123" in out
    assert ":8000" not in out


def test_seed_demo_uses_the_port_of_the_running_dev_server(tmp_path):
    record_devserver(tmp_path, 9124, os.getpid())
    assert "Demo store created: http://127.0.0.1:9124/demo/" in manage("seed_demo",
                                                                        data_dir=tmp_path)  # fmt: skip


def test_port_wins_over_the_record(tmp_path):
    record_devserver(tmp_path, 9123, os.getpid())
    out = createsite(tmp_path, PORT="9200")
    assert "http://127.0.0.1:9200" in out and ":9123" not in out


def test_public_url_wins_over_port_and_record(tmp_path):
    record_devserver(tmp_path, 9123, os.getpid())
    out = manage("seed_demo", data_dir=tmp_path, PORT="9200",
                 PUBLIC_URL="https://reengage.example.com/")  # fmt: skip
    assert "https://reengage.example.com/demo/" in out
    assert "127.0.0.1" not in out


def test_a_dead_dev_servers_record_is_ignored(tmp_path):
    record_devserver(tmp_path, 9123, dead_pid())
    out = createsite(tmp_path)
    assert "http://127.0.0.1:8000" in out and ":9123" not in out


def test_the_dev_server_records_its_port_and_removes_the_record(tmp_path):
    from reengage import dev_port

    os.environ["REENGAGE_DATA_DIR"] = str(tmp_path)
    try:
        dev_port.record(9300)
        assert dev_port.running_port() == 9300
        dev_port.forget()
        assert dev_port.running_port() is None
        assert not (tmp_path / "devserver.json").exists()
    finally:
        del os.environ["REENGAGE_DATA_DIR"]
