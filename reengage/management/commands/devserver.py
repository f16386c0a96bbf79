"""`make run`: migrate, create the development admin, run web + worker + beat.

All three run as children in their own sessions, so Ctrl-C reaches only this
supervisor, which stops them in order and waits; if any child dies, the rest
are stopped too. The embedded PostgreSQL and Redis (if used) are released when
this process exits, and stop unless another process still uses them.

The console is kept to what a person reads: one line for the migrations, no
banners from runserver or Celery, no per-task lines (settings.LOG_TASKS), and
the URL banner last, once everything answers, and again whenever Enter is
pressed. Readiness is checked without HTTP requests, so our own probe leaves
no request or error lines in the log.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from reengage import dev_port, health
from reengage.demo import DEMO_SITE_NAME
from reengage.embedded import data_dir

STOP_TIMEOUT = 15
READY_TIMEOUT = 90
# Warnings children would print at every start that a developer cannot act on:
# Celery's "running the worker with superuser privileges" (containers run as root).
QUIET_WARNINGS = "ignore:You're running the worker with superuser privileges"


class Command(BaseCommand):
    help = "Run the whole system in the foreground (web, Celery worker, Celery beat)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("PORT") or dev_port.DEFAULT_PORT)
        )
        parser.add_argument("--no-migrate", action="store_true")
        parser.add_argument(
            "--banner", action="store_true", help="only print the URLs of a running `make run`"
        )

    def handle(self, *args, port: int, no_migrate: bool, banner: bool = False, **options):
        if banner:
            self.print_banner(port)
            return
        if not settings.DEBUG:
            raise CommandError(
                "devserver is for development and DEBUG is off (is DEBUG=0 in your .env?); "
                "use gunicorn and celery in production"
            )
        if not no_migrate:
            self.migrate()
        self.ensure_dev_admin()
        self.seed_demo()

        env = {
            **os.environ,
            "REENGAGE_EMBEDDED_SERVICES": "0",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_RUNSERVER_HIDE_WARNING": "true",
            "PYTHONWARNINGS": ",".join(
                w for w in (os.environ.get("PYTHONWARNINGS"), QUIET_WARNINGS) if w
            ),
        }
        env["PORT"] = str(port)
        python = sys.executable
        beat_schedule = data_dir() / "celerybeat-schedule"
        beat_schedule.parent.mkdir(parents=True, exist_ok=True)
        # `migrate` above ran the system checks; runserver need not print them again.
        commands = {
            "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload",
                    "--skip-checks"],
            "worker": [python, "-m", "celery", "-A", "reengage", "--quiet", "worker",
                       "-l", "INFO", "--concurrency", "2", "-n", f"worker-{os.getpid()}@%h"],
            "beat": [python, "-m", "celery", "-A", "reengage", "--quiet", "beat",
                     "-l", "WARNING", "-s", str(beat_schedule)],
        }  # fmt: skip
        children: dict[str, subprocess.Popen] = {}
        stopping = threading.Event()

        def request_stop(signum, frame):
            stopping.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        # For createsite, seed_demo & co. in another terminal (reengage/dev_port.py).
        dev_port.record(port)
        try:
            for name, command in commands.items():
                children[name] = subprocess.Popen(
                    command, env=env, cwd=settings.BASE_DIR, start_new_session=True
                )
            if self.wait_until_ready(port, children, stopping):
                self.print_banner(port)
                self.repeat_banner_on_enter(port, stopping)
            while not stopping.is_set():
                dead = [name for name, child in children.items() if child.poll() is not None]
                if dead:
                    self.stderr.write(f"{', '.join(dead)} exited; stopping everything")
                    break
                time.sleep(0.2)
        finally:
            dev_port.forget()
            self.stop_children(children)
        self.stdout.write("reengage stopped.")

    def migrate(self) -> None:
        executor = MigrationExecutor(connection)
        pending = len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
        call_command("migrate", interactive=False, verbosity=0)
        if pending:
            self.stdout.write(f"database: applied {pending} migrations")
        else:
            self.stdout.write("database: up to date")

    def ensure_dev_admin(self) -> None:
        User = get_user_model()
        username, password = settings.DEV_ADMIN_USERNAME, settings.DEV_ADMIN_PASSWORD
        if not User.objects.filter(username=username).exists():
            User.objects.create_superuser(username, "admin@localhost", password)
            self.stdout.write(f"created development admin user {username!r}")

    def seed_demo(self) -> None:
        from django.core.management import get_commands

        if "seed_demo" in get_commands():
            call_command("seed_demo", "--brief", stdout=self.stdout)

    def wait_until_ready(self, port: int, children, stopping: threading.Event) -> bool:
        """True once the web port accepts connections and /healthz's checks pass.

        The checks run here, in-process, rather than through GET /healthz: a
        polling HTTP probe would log a request line (and a 503 error while the
        worker starts) for every attempt.
        """
        deadline = time.monotonic() + READY_TIMEOUT
        problems: list[str] = []
        while time.monotonic() < deadline and not stopping.is_set():
            if any(child.poll() is not None for child in children.values()):
                return False
            problems = [] if _accepts(port) else [f"web is not listening on port {port}"]
            problems += [p for p in (health.check_database(), health.check_redis()) if p]
            if not problems:
                problems = [p for p in [health.check_worker()] if p]
            if not problems:
                return True
            stopping.wait(0.5)
        if not stopping.is_set():
            self.stderr.write(
                f"not ready after {READY_TIMEOUT}s: {'; '.join(problems)}; see the lines above"
            )
        return False

    def print_banner(self, port: int) -> None:
        interactive = bool(sys.stdin and sys.stdin.isatty())
        again = (
            "Press Enter to show this again" if interactive else "`make banner` shows this again"
        )
        base = f"http://127.0.0.1:{port}"
        user, password = settings.DEV_ADMIN_USERNAME, settings.DEV_ADMIN_PASSWORD
        self.stdout.write(
            self.style.SUCCESS(
                "\n"
                f"  reengage is running at {base}/\n"
                f"  admin:       {base}/admin/  (user {user!r}, password {password!r}: "
                "development only)\n"
                f"  demo store:  {base}/demo/  (its keys: admin → Sites → {DEMO_SITE_NAME})\n"
                f"  dev mailbox: {base}/admin/campaigns/devmail/  (email the demo sends)\n"
                f"  health:      {base}/healthz\n"
                f"  {again}, Ctrl-C to stop web, worker and beat.\n"
            )
        )

    def repeat_banner_on_enter(self, port: int, stopping: threading.Event) -> None:
        if not (sys.stdin and sys.stdin.isatty()):
            return

        def watch() -> None:
            while not stopping.is_set():
                readable, _, _ = select.select([sys.stdin], [], [], 0.5)
                if readable:
                    if not sys.stdin.readline():
                        return  # stdin closed
                    self.print_banner(port)

        threading.Thread(target=watch, name="banner-on-enter", daemon=True).start()

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


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
