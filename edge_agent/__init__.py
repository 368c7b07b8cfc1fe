"""Smart Venue Edge agent: durable outbox on the device, exactly-once sync to the city hub."""

__version__ = "0.1.0"
