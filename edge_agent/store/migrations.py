"""Named schema migrations, each applied in its own transaction and recorded."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

Migration = tuple[str, Sequence[str]]

OUTBOX_MIGRATIONS: list[Migration] = [
    (
        "0001_outbox",
        [
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
            "CREATE TABLE runtime (key TEXT PRIMARY KEY, value TEXT, updated REAL) WITHOUT ROWID",
            # One table per data class: acks and drops delete exact seq ranges of one class.
            "CREATE TABLE ob_transaction (seq INTEGER PRIMARY KEY, ts REAL NOT NULL,"
            " kind TEXT NOT NULL, body TEXT NOT NULL)",
            "CREATE TABLE ob_measurement (seq INTEGER PRIMARY KEY, ts REAL NOT NULL,"
            " kind TEXT NOT NULL, body TEXT NOT NULL)",
            "CREATE TABLE ob_state (seq INTEGER PRIMARY KEY, ts REAL NOT NULL,"
            " kind TEXT NOT NULL, body TEXT NOT NULL, key TEXT NOT NULL UNIQUE)",
            # Seq ranges deliberately not delivered (dropped, coalesced), announced to the hub.
            "CREATE TABLE skipped (id INTEGER PRIMARY KEY, first INTEGER NOT NULL,"
            " last INTEGER NOT NULL, reason TEXT NOT NULL)",
        ],
    ),
    (
        "0002_origins",
        [
            # Records relayed from devices that number their own (sensor nodes): the highest number
            # stored per source, checked and moved in the same transaction as the insert, so a
            # re-sent record is stored once whatever crashes between the two.
            "CREATE TABLE origins (source TEXT PRIMARY KEY, epoch TEXT NOT NULL, last INTEGER NOT NULL)"
            " WITHOUT ROWID",
        ],
    ),
    (
        "0003_skips_keyed_by_seq",
        [
            # A skip row's id was its rowid, handed out again once the newest row was deleted: a late
            # (duplicate) ack naming an old id deleted a newer range before it was ever announced. The
            # first seq of the range is the id now: seqs are never reused, so neither are ids.
            "CREATE TABLE skipped_new (first INTEGER PRIMARY KEY, last INTEGER NOT NULL, reason TEXT NOT NULL)",
            "INSERT OR IGNORE INTO skipped_new SELECT first, last, reason FROM skipped ORDER BY id",
            "DROP TABLE skipped",
            "ALTER TABLE skipped_new RENAME TO skipped",
        ],
    ),
]


def migrate(conn: sqlite3.Connection, migrations: list[Migration] = OUTBOX_MIGRATIONS) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied. Connection is autocommit."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, statements in migrations:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in statements:
                conn.execute(sql)
            conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
