"""`manage.py flush_events`: drain the event stream now (the periodic task does the same)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from tracking import flush


class Command(BaseCommand):
    help = "Flush buffered events from Redis into PostgreSQL; inspect or replay dead letters."

    def add_arguments(self, parser):
        parser.add_argument("--budget", type=float, default=60.0, help="seconds to spend at most")
        parser.add_argument("--dead-letters", action="store_true", help="list dead letters")
        parser.add_argument(
            "--replay-dead-letters", action="store_true", help="put dead letters back on the stream"
        )

    def handle(self, *args, budget, dead_letters, replay_dead_letters, **options):
        if dead_letters:
            for entry_id, fields in flush.dead_letters():
                self.stdout.write(json.dumps({"id": entry_id, **fields}))
            return
        if replay_dead_letters:
            self.stdout.write(f"replayed {flush.replay_dead_letters()} dead-lettered entries")
            return
        result = flush.flush_until_empty(budget_seconds=budget)
        self.stdout.write(
            json.dumps(
                {"entries": result.entries, "events": result.events, "stored": result.stored,
                 "dead_letters": result.dead_letters, "errors": result.errors}
            )
        )  # fmt: skip
        if result.errors:
            raise SystemExit(1)
