"""Sensor nodes (firmware/, MicroPython on ESP32) relayed from the gateway's local broker into the outbox."""
