"""Reference hub ingest: shared-subscription MQTT workers writing exactly once into SQLite/PostgreSQL."""
