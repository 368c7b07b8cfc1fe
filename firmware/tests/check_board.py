# On-device smoke check (HIL): the hardware layer reads the doors and the air sensor and the watchdog can be
# armed and fed. Runs on a flashed ESP32 (mpremote run) or on the unix port with the fake hardware.
# Prints one line: BOARD {"platform": ..., "doors": [...], "air": {...}}
import json
import sys

from svnode import VERSION, config
from svnode.hw import Board

cfg = config.load("config.json")
b = Board(cfg)
doors = b.occupied()
assert isinstance(doors, list) and all(isinstance(d, bool) for d in doors), doors
air = b.air()
for k, v in air.items():
    assert k in ("t_c", "rh", "nh3_ppm", "h2s_ppm") and isinstance(v, float), (k, v)
b.watchdog(30000)
b.feed()
print("BOARD " + json.dumps({"platform": sys.platform, "version": VERSION, "doors": doors, "air": air}))
