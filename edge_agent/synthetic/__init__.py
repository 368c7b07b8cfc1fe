"""Synthetic scenic-spot gate: demo and fault-test traffic (passes, counts, occupancy) without hardware."""
