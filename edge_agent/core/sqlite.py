"""One way to write a SQLite transaction on an autocommit connection (isolation_level=None).

    with transaction(conn):          # BEGIN IMMEDIATE: the write lock is taken now, not at the first write
        conn.execute(...)

Guaranteed: COMMIT when the block ends normally (a `return` inside it included), ROLLBACK when it raises (the
exception is re-raised) or when COMMIT itself fails (a full disk), so the connection is never left inside an open
transaction. Raises sqlite3.OperationalError when a transaction is already open on the connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal


@contextmanager
def transaction(conn: sqlite3.Connection,
                mode: Literal["DEFERRED", "IMMEDIATE", "EXCLUSIVE"] = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
    conn.execute(f"BEGIN {mode}")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
