"""Smart Venue toilet sensor node (MicroPython, ESP32; runs on the unix port for tests)."""

VERSION = "1.0.0"
