"""Ticket gate role: ID numbers, signed tickets, anti-passback, capacity. Pure core, no I/O."""
