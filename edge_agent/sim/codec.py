"""Checksums the simulated devices compute themselves, written from the protocol documents and not shared
with the drivers: CRC-16/MODBUS table-driven (the drivers compute it bit by bit), XOR-8 over a byte string."""

from __future__ import annotations


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc16_modbus(data: bytes) -> bytes:
    """The two CRC bytes as they go on the wire (low byte first): Modbus over Serial Line V1.02, 2.5.1.2."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return bytes((crc & 0xFF, crc >> 8))


def xor8(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x
