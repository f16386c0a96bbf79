"""Monthly partitions of `tracking_event`: create ahead, drop past retention."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection

PARENT = "tracking_event"


def month_start(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(start: datetime) -> str:
    return f"{PARENT}_y{start.year:04d}m{start.month:02d}"


def existing_partitions(cursor) -> set[str]:
    cursor.execute(
        """
        SELECT child.relname FROM pg_inherits
        JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE parent.relname = %s
        """,
        [PARENT],
    )
    return {row[0] for row in cursor.fetchall()}


def ensure_partitions(now: datetime, *, months_back: int, months_ahead: int = 3) -> list[str]:
    """Create the monthly partitions from `months_back` before `now` to `months_ahead` after.

    Rows already sitting in the default partition for a month being created are
    moved into the new partition in the same transaction.
    """
    created = []
    first = add_months(month_start(now), -months_back)
    with connection.cursor() as cursor:
        have = existing_partitions(cursor)
        for offset in range(months_back + months_ahead + 1):
            start = add_months(first, offset)
            name = partition_name(start)
            if name in have:
                continue
            end = add_months(start, 1)
            cursor.execute(
                f"CREATE TEMP TABLE _moving ON COMMIT DROP AS "
                f"WITH moved AS (DELETE FROM {PARENT}_default "
                f"WHERE timestamp >= %s AND timestamp < %s RETURNING *) SELECT * FROM moved",
                [start, end],
            )
            cursor.execute(
                f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM (%s) TO (%s)",
                [start, end],
            )
            cursor.execute(f"INSERT INTO {PARENT} SELECT * FROM _moving")
            cursor.execute("DROP TABLE _moving")
            created.append(name)
    return created


def drop_partitions_before(cutoff: datetime) -> list[str]:
    """Drop every monthly partition that ends at or before `cutoff`."""
    dropped = []
    with connection.cursor() as cursor:
        for name in sorted(existing_partitions(cursor)):
            if not name.startswith(f"{PARENT}_y"):
                continue
            year, month = int(name[-7:-3]), int(name[-2:])
            end = add_months(datetime(year, month, 1, tzinfo=UTC), 1)
            if end <= cutoff:
                cursor.execute(f"DROP TABLE {name}")
                dropped.append(name)
    return dropped
