"""Which port `make run` serves on, for commands run in another terminal.

`PORT=9000 make run` (or `manage.py devserver --port 9000`) records its port in
the data directory while it runs. Settings build the default PUBLIC_URL from
`PORT`, else from that record, else 8000, so `manage.py createsite` or
`seed_demo` in a second terminal print the URLs of the server that is running.
PUBLIC_URL, when set, wins over all of them.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

DEFAULT_PORT = 8000


def record_path() -> Path:
    base = Path(
        os.environ.get("REENGAGE_DATA_DIR") or Path(__file__).resolve().parent.parent / ".data"
    )
    return base.resolve() / "devserver.json"


def record(port: int) -> Path:
    path = record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"port": port, "pid": os.getpid()}))
    return path


def forget() -> None:
    path = record_path()
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def running_port() -> int | None:
    """The recorded port while the process that recorded it still runs."""
    try:
        entry = json.loads(record_path().read_text())
        port, pid = int(entry["port"]), int(entry["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a server that died without cleaning up
    except PermissionError:
        pass  # alive, someone else's
    return port


def public_port(env_port: int | None) -> int:
    """PORT if set, else the running dev server's, else 8000."""
    return env_port or running_port() or DEFAULT_PORT
