"""MQTT sync to the city hub: wire codec (envelope), topics, reconnect policy, uplink, downlink.

Exceptions: envelope.EnvelopeError for any malformed payload; nothing else escapes a decoder.
"""
