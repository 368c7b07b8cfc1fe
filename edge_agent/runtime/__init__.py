"""Agent runtime pieces: supervision, systemd notification, metrics, log redaction."""
