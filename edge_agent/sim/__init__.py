"""Device simulators on pty pairs (and GPIO lines) for demos, training and tests: `edge-agent sim`.

Each speaks its device's wire protocol from its own constants and checksums, never the driver's: a wrong
constant in a driver must fail against its simulator, not pass on both sides (tests/test_protocols.py pins
the vendor documents' byte streams).
"""
