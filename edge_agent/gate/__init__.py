"""Ticket gate role: pure cores (ticket rules in tickets.py, site occupancy in site.py) and the role shell."""
