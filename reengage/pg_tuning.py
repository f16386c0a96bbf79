"""The PostgreSQL settings reengage ships for the event flusher's write load.

The flusher writes one large transaction per second (COPY and INSERT ... SELECT of
up to FLUSH_PASS_EVENTS rows into the partitioned events table and its indexes, plus
upserts). docs/operations.md#postgresql-settings explains each setting.

This dict is the one list: docker-compose.yml repeats it as ``-c`` options
(tests/test_deploy_files.py compares the two), the embedded server
(reengage/embedded.py) writes it into its data directory, and bench/ingest_bench.py
prints the server's values and warns when they differ. Values are spelled as
``SHOW`` prints them, so a running server can be compared with plain strings. None
of them trades durability: fsync, synchronous_commit and full_page_writes stay on.
"""

from __future__ import annotations

WRITE_TUNING: dict[str, str] = {
    "shared_buffers": "1GB",
    "wal_buffers": "64MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    "wal_compression": "lz4",
}
