"""Sensor conversions, kept free of hardware so they run (and are tested) on the unix port.

- SHT3x-type temperature/humidity over I2C: single-shot, high repeatability (command 0x2400), six bytes
  back: T msb, lsb, CRC-8, RH msb, lsb, CRC-8 (polynomial 0x31, init 0xFF, per the Sensirion datasheet).
- Electrochemical NH3 / H2S modules with a linear analogue output: ppm = (mV - zero_mV) × ppm_per_mV,
  both calibrated per module and set through the node's config.
"""

SHT_ADDR = 0x44
SHT_MEASURE = b"\x24\x00"


class SensorError(Exception):
    pass


def crc8(data):
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def sht_decode(raw):
    """Six bytes from the sensor -> (temperature °C, relative humidity %)."""
    if len(raw) != 6:
        raise SensorError("SHT3x: expected 6 bytes, got %d" % len(raw))
    if crc8(raw[0:2]) != raw[2] or crc8(raw[3:5]) != raw[5]:
        raise SensorError("SHT3x: CRC mismatch")
    t = (raw[0] << 8) | raw[1]
    rh = (raw[3] << 8) | raw[4]
    return -45 + 175 * t / 65535, min(100.0, max(0.0, 100 * rh / 65535))


def sht_encode(t_c, rh):
    """The sensor's side of sht_decode (for the unix-port fake and tests)."""
    t = max(0, min(65535, int(round((t_c + 45) * 65535 / 175))))
    h = max(0, min(65535, int(round(rh * 65535 / 100))))
    a, b = bytes((t >> 8, t & 0xFF)), bytes((h >> 8, h & 0xFF))
    return a + bytes((crc8(a),)) + b + bytes((crc8(b),))


def gas_ppm(mv, zero_mv, ppm_per_mv):
    """Linear analogue gas module; readings below zero (drift) clamp to 0."""
    return max(0.0, (mv - zero_mv) * ppm_per_mv)
