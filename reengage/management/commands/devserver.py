"""`make run`: migrate, create the development admin, run web + worker + beat.

All three run as children in their own sessions, so Ctrl-C reaches only this
supervisor, which stops them in order and waits; if any child dies, the rest
are stopped too. The embedded PostgreSQL and Redis (if used) are released when
this process exits, and stop unless another process still uses them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from reengage import dev_port
from reengage.embedded import data_dir

STOP_TIMEOUT = 15


class Command(BaseCommand):
    help = "Run the whole system in the foreground (web, Celery worker, Celery beat)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("PORT") or dev_port.DEFAULT_PORT)
        )
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args, port: int, no_migrate: bool, **options):
        if not settings.DEBUG:
            raise CommandError(
                "devserver is for development; use gunicorn and celery in production"
            )
        if not no_migrate:
            call_command("migrate", interactive=False, verbosity=1)
        self.ensure_dev_admin()
        self.seed_demo()

        env = {**os.environ, "REENGAGE_EMBEDDED_SERVICES": "0", "PYTHONUNBUFFERED": "1"}
        env["PORT"] = str(port)
        python = sys.executable
        beat_schedule = data_dir() / "celerybeat-schedule"
        beat_schedule.parent.mkdir(parents=True, exist_ok=True)
        commands = {
            "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            "worker": [python, "-m", "celery", "-A", "reengage", "worker", "-l", "INFO",
                       "--concurrency", "2", "-n", f"worker-{os.getpid()}@%h"],
            "beat": [python, "-m", "celery", "-A", "reengage", "beat", "-l", "INFO",
                     "-s", str(beat_schedule)],
        }  # fmt: skip
        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        # For createsite, seed_demo & co. in another terminal (reengage/dev_port.py).
        dev_port.record(port)
        try:
            for name, command in commands.items():
                children[name] = subprocess.Popen(
                    command, env=env, cwd=settings.BASE_DIR, start_new_session=True
                )
            self.announce_when_healthy(port, children, lambda: stopping)
            while not stopping:
                dead = [name for name, child in children.items() if child.poll() is not None]
                if dead:
                    self.stderr.write(f"{', '.join(dead)} exited; stopping everything")
                    break
                time.sleep(0.2)
        finally:
            dev_port.forget()
            self.stop_children(children)
        self.stdout.write("reengage stopped.")

    def ensure_dev_admin(self) -> None:
        User = get_user_model()
        username, password = settings.DEV_ADMIN_USERNAME, settings.DEV_ADMIN_PASSWORD
        if not User.objects.filter(username=username).exists():
            User.objects.create_superuser(username, "admin@localhost", password)
            self.stdout.write(f"created development admin user {username!r}")

    def seed_demo(self) -> None:
        from django.core.management import get_commands

        if "seed_demo" in get_commands():
            call_command("seed_demo", verbosity=0)

    def announce_when_healthy(self, port, children, is_stopping) -> None:
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not is_stopping():
            if any(child.poll() is not None for child in children.values()):
                return
            try:
                with urllib.request.urlopen(url, timeout=3) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            if not is_stopping():
                self.stderr.write(f"{url} is not healthy yet; check the logs above")
            return
        base = f"http://127.0.0.1:{port}"
        user, password = settings.DEV_ADMIN_USERNAME, settings.DEV_ADMIN_PASSWORD
        self.stdout.write(
            self.style.SUCCESS(
                "\n"
                f"  reengage is running at {base}/\n"
                f"  admin:      {base}/admin/  (user {user!r}, password {password!r}: "
                "development only)\n"
                f"  demo store: {base}/demo/\n"
                f"  health:     {url}\n"
                "  Press Ctrl-C to stop web, worker and beat.\n"
            )
        )

    def stop_children(self, children: dict[str, subprocess.Popen]) -> None:
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
