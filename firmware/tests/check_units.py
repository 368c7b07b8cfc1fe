# Unit checks run by the real MicroPython unix port (tests/test_firmware.py starts it in a temp dir).
# Prints "UNITS OK" at the end; any failed assert ends the run with a traceback.
import os
import sys

from svnode import config, sensors
from svnode.hw import Board
from svnode.ring import HDR, Ring

# -- sensors: the datasheet's CRC example (0xBEEF -> 0x92) and a round trip through the wire format
assert sensors.crc8(b"\xbe\xef") == 0x92
t, rh = sensors.sht_decode(sensors.sht_encode(24.5, 61.0))
assert abs(t - 24.5) < 0.01 and abs(rh - 61.0) < 0.01, (t, rh)
raw = bytearray(sensors.sht_encode(20, 50))
raw[4] ^= 1
try:
    sensors.sht_decode(bytes(raw))
    raise AssertionError("a corrupted humidity word was accepted")
except sensors.SensorError:
    pass
assert sensors.gas_ppm(500, 400, 0.0625) == 6.25 and sensors.gas_ppm(300, 400, 0.0625) == 0.0

# -- config: good changes applied, any bad key or value rejects the whole patch
clean, errors = config.validate({"interval_s": 5, "nh3_zero_mv": 410})
assert clean == {"interval_s": 5, "nh3_zero_mv": 410.0} and not errors
for bad in ({"interval_s": 0}, {"interval_s": "5"}, {"interval_s": True}, {"nope": 1}, {"node_id": "a/b"},
            {"door_pins": [1, 99]}, {"interval_s": 5, "port": 0}, [1, 2], None):
    clean, errors = config.validate(bad)
    assert errors and not clean, bad
# -- config/set cannot move the node to another Wi-Fi or broker, nor rename it; its flash file still can
for key, value in (("ssid", "evil-ap"), ("psk", "evil-pass"), ("broker", "10.0.0.66"), ("port", 1884),
                   ("tls", False), ("ca", "evil.der"), ("mqtt_pass", "x"), ("node_id", "n9"), ("prefix", "p")):
    clean, errors = config.validate({key: value, "interval_s": 5}, True)
    assert not clean and errors == ["%s cannot be changed remotely (set on the node)" % key], (key, errors)
clean, errors = config.validate({"ssid": "site-ap", "psk": "pw", "broker": "192.168.4.2"})
assert clean == {"ssid": "site-ap", "psk": "pw", "broker": "192.168.4.2"} and not errors
config.save("cfg.json", dict(config.DEFAULTS, interval_s=7, psk="secret"))
cfg = config.load("cfg.json")
assert cfg["interval_s"] == 7 and config.public(cfg)["psk"] == "***"
with open("cfg.json", "w") as f:
    f.write('{"interval_s": -3}')
assert config.load("cfg.json")["interval_s"] == config.DEFAULTS["interval_s"]  # damaged file: defaults

# -- ring: numbering, ack persisted, survives reopen
r = Ring("r", slots=8, slot_size=64)
rid = r.id
for i in range(5):
    assert r.append('[null,"air",{"i":%d}]' % i) == i + 1
assert [s for s, _ in r.pending()] == [1, 2, 3, 4, 5] and r.depth() == 5
r.ack(3)
r.close()
r = Ring("r", slots=8, slot_size=64)
assert r.id == rid and r.next == 6 and [s for s, _ in r.pending()] == [4, 5]
# a power cut in the middle of writing seq 6: its slot fails the CRC, numbering resumes at 6
r.append("x6")
r.f.seek((6 % 8) * 64 + HDR)
r.f.write(b"?")
r.f.flush()
r.close()
r = Ring("r", slots=8, slot_size=64)
assert r.next == 6 and [s for s, _ in r.pending()] == [4, 5], (r.next, r.pending())
# full ring: the oldest unconfirmed records are overwritten and counted
for i in range(10):
    r.append("y%d" % i)
assert r.dropped == 4 and [s for s, _ in r.pending(limit=50)] == list(range(8, 16)) and r.depth() == 8
r.ack(9)
r.close()
r = Ring("r", slots=8, slot_size=64)
assert r.dropped == 4 and r.acked == 9, (r.dropped, r.acked)  # the drop count survives a reboot
try:
    r.append("z" * 60)
    raise AssertionError("an oversized record was accepted")
except ValueError:
    pass
r.close()
# a lost id file means a new ring: the old slots must not be replayed under the new id
os.remove("r.id")
r = Ring("r", slots=8, slot_size=64)
assert r.id != rid and r.pending() == [] and r.next == 1 and r.acked == 0, (r.next, r.acked)
r.close()

# -- the fake hardware layer reads the test's JSON state
with open("hw.json", "w") as f:
    f.write('{"doors": [0, 1], "t_c": 22.0, "rh": 40, "nh3_mv": 560}')
b = Board(config.DEFAULTS)
assert b.occupied() == [False, True]
air = b.air()
assert abs(air["t_c"] - 22.0) < 0.01 and air["nh3_ppm"] == 10.0 and "h2s_ppm" not in air, air
print("UNITS OK", sys.implementation.name)
