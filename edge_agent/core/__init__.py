"""Neutral seams shared by the agent and every role: ports (Sink, Producer, Context, CommandError), the local
bus, clocks, backoff, the SQLite transaction helper, and the resident ID number rules (check digit, masking) that
the gate and the kiosk share.

Nothing here imports a role, the registry, sync, store or drivers: roles import this package, the agent wires
it up. Exceptions: CommandError (a downlink command that cannot be carried out).
"""
