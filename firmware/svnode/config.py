"""Node configuration: defaults, validation of changes sent over MQTT, and its file in flash."""

import json

DEFAULTS = {
    "node_id": "toilet-node-1",
    "broker": "192.168.4.1",  # the gateway's local mosquitto
    "port": 1883,
    "prefix": "svnode",
    "ssid": "",
    "psk": "",
    "interval_s": 60,  # air reading period
    "keepalive_s": 30,
    "wdt_ms": 30000,
    "door_pins": [4, 5],
    "i2c_scl": 22,
    "i2c_sda": 21,
    "nh3_pin": 34,
    "h2s_pin": 35,
    "nh3_zero_mv": 400.0,
    "nh3_ppm_per_mv": 0.0625,  # 0.4-2.0 V = 0-100 ppm
    "h2s_zero_mv": 400.0,
    "h2s_ppm_per_mv": 0.03125,  # 0.4-2.0 V = 0-50 ppm
    "ring_slots": 256,
    "mqtt_pass": "",  # this node's own broker password (user name = node_id); from `venue-provision broker nodes`
    "tls": False,  # TLS to the gateway's broker, checked against the CA file below
    "ca": "ca.der",  # the gateway's local CA, DER (mbedTLS on the ESP32 reads DER)
}

# key -> (type, min, max) for numbers; lists and strings checked by type only
_NUM = {
    "port": (int, 1, 65535), "interval_s": (int, 1, 86400), "keepalive_s": (int, 5, 600),
    "wdt_ms": (int, 5000, 120000), "i2c_scl": (int, 0, 48), "i2c_sda": (int, 0, 48),
    "nh3_pin": (int, 0, 48), "h2s_pin": (int, 0, 48), "nh3_zero_mv": (float, 0, 3300),
    "nh3_ppm_per_mv": (float, 0, 10), "h2s_zero_mv": (float, 0, 3300), "h2s_ppm_per_mv": (float, 0, 10),
    "ring_slots": (int, 16, 4096),
}
SECRET = ("psk", "mqtt_pass")
# set on the node only (flash, by the technician), never by config/set: who the node is, which Wi-Fi it joins and
# which broker it trusts. Otherwise a neighbour's config/set could move the node to their network or broker.
LOCAL_ONLY = ("node_id", "ssid", "psk", "broker", "port", "prefix", "mqtt_pass", "tls", "ca")
# changing these needs a restart of the MQTT session or the hardware set-up
RESTART = ("node_id", "broker", "port", "prefix", "ssid", "psk", "keepalive_s", "wdt_ms", "door_pins",
           "i2c_scl", "i2c_sda", "nh3_pin", "h2s_pin", "ring_slots", "mqtt_pass", "tls", "ca")


def validate(patch, remote=False):
    """A dict of changes -> (clean changes, errors). Unknown keys and bad values are errors, and so are
    LOCAL_ONLY keys when `remote` (config/set); a patch with any error changes nothing."""
    if not isinstance(patch, dict):
        return {}, ["config must be a JSON object"]
    clean, errors = {}, []
    for k, v in patch.items():
        if k not in DEFAULTS:
            errors.append("unknown key %s" % k)
        elif remote and k in LOCAL_ONLY:
            errors.append("%s cannot be changed remotely (set on the node)" % k)
        elif k in _NUM:
            kind, lo, hi = _NUM[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
                errors.append("%s must be %s" % (k, kind.__name__))
            elif not lo <= v <= hi:
                errors.append("%s must be within %s..%s" % (k, lo, hi))
            else:
                clean[k] = kind(v)
        elif k == "tls":
            if not isinstance(v, bool):
                errors.append("tls must be true or false")
            else:
                clean[k] = v
        elif k == "door_pins":
            if not isinstance(v, list) or not v or len(v) > 16 or not all(
                    isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 48 for p in v):
                errors.append("door_pins must be a list of 1..16 GPIO numbers")
            else:
                clean[k] = v
        elif not isinstance(v, str) or len(v) > 64:
            errors.append("%s must be a string of at most 64 characters" % k)
        elif k in ("node_id", "prefix") and (not v or "/" in v or "+" in v or "#" in v):
            errors.append("%s must be non-empty, without / + #" % k)
        else:
            clean[k] = v
    return ({}, errors) if errors else (clean, [])


def load(path):
    cfg = dict(DEFAULTS)
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return cfg  # first boot or a damaged file: defaults (the file is rewritten on the next change)
    clean, errors = validate(saved)
    if errors:
        print("config: ignoring saved file:", errors)
        return cfg
    cfg.update(clean)
    return cfg


def save(path, cfg):
    import os

    with open(path + ".tmp", "w") as f:
        json.dump({k: v for k, v in cfg.items() if v != DEFAULTS.get(k)}, f)
    os.rename(path + ".tmp", path)


def public(cfg):
    """What may be shown: secrets masked."""
    return {k: ("***" if k in SECRET and v else v) for k, v in cfg.items()}
