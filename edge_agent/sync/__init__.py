"""MQTT sync to the city hub: wire codec (envelope), topics, uplink, downlink (the reconnect policy is core.backoff).

Exceptions: envelope.EnvelopeError for any malformed payload; nothing else escapes a decoder.
"""
