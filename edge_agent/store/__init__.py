"""Durable on-device storage: the SQLite outbox.

Exceptions raised here (all subclass OutboxError):
    OutboxFull    a transaction record could not be made durable (disk or budget full); also raised by
                  Outbox() when the disk is too full even to open the database and no reserve is left
    OutboxClosed  the outbox was closed before the record was written
"""

from edge_agent.store.outbox import Outbox, OutboxClosed, OutboxError, OutboxFull, StorePolicy

__all__ = ["Outbox", "OutboxClosed", "OutboxError", "OutboxFull", "StorePolicy"]
