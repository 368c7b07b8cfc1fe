"""The thin hardware layer: the only module that touches machine/network.

On the ESP32 it drives real pins, the ADC, I2C, Wi-Fi and the hardware watchdog. Anywhere else (the
unix port in tests) it fakes them: door inputs and sensor voltages come from a JSON file the test
writes (path in $SVNODE_FAKE), the I2C sensor answers with correctly framed SHT3x bytes, and the
watchdog ends the process with code 86 when it is fed late, as the real one would reset the chip.
"""

import sys
import time

from svnode import sensors

ESP32 = sys.platform == "esp32"


class Board:
    def __init__(self, cfg):
        self.cfg = cfg
        self.wdt = None
        if ESP32:
            from machine import ADC, I2C, Pin

            self.doors = [Pin(p, Pin.IN, Pin.PULL_UP) for p in cfg["door_pins"]]
            self.i2c = I2C(0, scl=Pin(cfg["i2c_scl"]), sda=Pin(cfg["i2c_sda"]), freq=100000)
            self.nh3 = ADC(Pin(cfg["nh3_pin"]), atten=ADC.ATTN_11DB)
            self.h2s = ADC(Pin(cfg["h2s_pin"]), atten=ADC.ATTN_11DB)
        else:
            self.fake = _Fake()

    # -------------------------------------------------------------- watchdog

    def watchdog(self, timeout_ms):
        if ESP32:
            from machine import WDT

            self.wdt = WDT(timeout=timeout_ms)
        else:
            self.wdt = _FakeWDT(timeout_ms)

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    # -------------------------------------------------------------- network

    def network_up(self):
        """Join Wi-Fi (ESP32); True when the node has an address."""
        if not ESP32:
            return True
        import network

        wlan = network.WLAN(network.STA_IF)
        if not wlan.active():
            wlan.active(True)
        if not wlan.isconnected() and self.cfg["ssid"]:
            wlan.connect(self.cfg["ssid"], self.cfg["psk"])
        return wlan.isconnected()

    def rssi(self):
        if not ESP32:
            return None
        import network

        try:
            return network.WLAN(network.STA_IF).status("rssi")
        except (OSError, ValueError):
            return None

    # -------------------------------------------------------------- inputs

    def occupied(self):
        """Per stall: True when its door is locked (switch closes to ground)."""
        if ESP32:
            return [p.value() == 0 for p in self.doors]
        return [bool(x) for x in self.fake.state().get("doors", [])]

    def air(self):
        """{"t_c", "rh", "nh3_ppm", "h2s_ppm"}; a failed sensor leaves its keys out."""
        c, out = self.cfg, {}
        try:
            raw = self._sht_read()
            out["t_c"], out["rh"] = sensors.sht_decode(raw)
        except (OSError, sensors.SensorError) as err:
            print("air: T/RH sensor:", err)
        for name, pin in (("nh3", "nh3"), ("h2s", "h2s")):
            mv = self._millivolts(pin)
            if mv is not None:
                out[name + "_ppm"] = sensors.gas_ppm(mv, c[name + "_zero_mv"], c[name + "_ppm_per_mv"])
        return out

    def _sht_read(self):
        if ESP32:
            self.i2c.writeto(sensors.SHT_ADDR, sensors.SHT_MEASURE)
            time.sleep_ms(16)  # high-repeatability conversion time
            return self.i2c.readfrom(sensors.SHT_ADDR, 6)
        return self.fake.sht()

    def _millivolts(self, which):
        if ESP32:
            adc = self.nh3 if which == "nh3" else self.h2s
            return adc.read_uv() / 1000
        mv = self.fake.state().get(which + "_mv")
        return None if mv is None else float(mv)

    def reset(self):
        if ESP32:
            import machine

            machine.reset()
        sys.exit(0)


class _Fake:
    """Inputs for the unix port, re-read from a JSON file at most every 100 ms."""

    def __init__(self):
        import os

        self.path = os.getenv("SVNODE_FAKE") or "fake_hw.json"
        self._cache = {}
        self._at = None

    def state(self):
        import json

        now = time.ticks_ms()
        if self._at is None or time.ticks_diff(now, self._at) > 100:
            self._at = now
            try:
                with open(self.path) as f:
                    self._cache = json.load(f)
            except (OSError, ValueError):
                pass  # mid-write or absent: keep the last good state
        return self._cache

    def sht(self):
        s = self.state()
        if "t_c" not in s:
            raise OSError(19, "no I2C device")  # ENODEV, as the ESP32 port raises for a missing sensor
        raw = sensors.sht_encode(s["t_c"], s.get("rh", 50))
        if s.get("sht_corrupt"):
            raw = raw[:2] + bytes((raw[2] ^ 0xFF,)) + raw[3:]
        return raw


class _FakeWDT:
    def __init__(self, timeout_ms):
        self.timeout = timeout_ms
        self.last = time.ticks_ms()

    def feed(self):
        now = time.ticks_ms()
        late = time.ticks_diff(now, self.last)
        if late > self.timeout:
            print("WDT: not fed for %d ms (timeout %d): reset" % (late, self.timeout))
            sys.exit(86)
        self.last = now
