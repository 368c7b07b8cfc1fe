"""Neutral seams shared by the agent and every role: ports (Sink, Producer, Context, CommandError), the local
bus, clocks, backoff and the SQLite transaction helper.

Nothing here imports a role, the registry, sync, store or drivers: roles import this package, the agent wires
it up. Exceptions: CommandError (a downlink command that cannot be carried out).
"""
