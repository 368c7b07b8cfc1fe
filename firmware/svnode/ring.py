"""Readings kept in flash until the gateway confirms them: a fixed-size ring file of slots.

Each slot holds one record: b"SV", seq (4 bytes), length (2 bytes), CRC-16 of seq+length+payload, then
the payload. A slot torn by a power cut fails its CRC and is ignored. Seq numbers grow for the life of
the ring file, so the gateway can drop a record it already has; the ring's random id (its own small
file) tells the gateway when a node's flash was wiped and numbering started again. The confirmed
watermark is written to a third file with write-then-rename. When the ring is full the oldest
unconfirmed record is overwritten and counted in `dropped`.
"""

import os

MAGIC = b"SV"
HDR = 10


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE, bit by bit: slots are small and flash is slower than this loop."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _be(n, width):
    return bytes((n >> (8 * (width - 1 - i))) & 0xFF for i in range(width))


def _int(b):
    n = 0
    for x in b:
        n = (n << 8) | x
    return n


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Ring:
    def __init__(self, prefix, slots=256, slot_size=256):
        self.prefix, self.slots, self.size = prefix, slots, slot_size
        self.path = prefix + ".dat"
        self.id = self._ring_id()
        if _exists(self.path):
            self.slots = max(1, os.stat(self.path)[6] // slot_size)  # a new ring_slots applies to a new ring
        else:
            with open(self.path, "wb") as f:
                blank = bytes(slot_size)
                for _ in range(slots):
                    f.write(blank)
        self.f = open(self.path, "r+b")
        self.acked, self.dropped = self._load_ack()
        self.next = self._scan()

    def _ring_id(self):
        path = self.prefix + ".id"
        try:
            with open(path) as f:
                rid = f.read().strip()
            if len(rid) == 16:
                return rid
        except OSError:
            pass
        rid = "".join("%02x" % b for b in os.urandom(8))
        with open(path + ".tmp", "w") as f:
            f.write(rid)
        os.rename(path + ".tmp", path)
        for old in (self.path, self.prefix + ".ack"):  # a new id is a new numbering: nothing old comes back
            if _exists(old):
                os.remove(old)
        return rid

    def _load_ack(self):
        """(confirmed watermark, records overwritten unconfirmed so far) from "<acked> <dropped>"."""
        try:
            with open(self.prefix + ".ack") as f:
                parts = f.read().split()
            return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        except (OSError, ValueError, IndexError):
            return 0, 0

    def _slot(self, i):
        self.f.seek((i % self.slots) * self.size)
        head = self.f.read(HDR)
        if len(head) < HDR or head[:2] != MAGIC:
            return None
        seq, n = _int(head[2:6]), _int(head[6:8])
        if n > self.size - HDR:
            return None
        payload = self.f.read(n)
        if len(payload) != n or crc16(head[2:8] + payload) != _int(head[8:10]):
            return None
        return seq, payload

    def _scan(self):
        top = self.acked
        for i in range(self.slots):
            got = self._slot(i)
            if got is not None and got[0] > top:
                top = got[0]
        return top + 1

    def append(self, payload):
        """Store one record durably; returns its seq."""
        if isinstance(payload, str):
            payload = payload.encode()
        if len(payload) > self.size - HDR:
            raise ValueError("record of %d bytes does not fit a %d-byte slot" % (len(payload), self.size))
        seq = self.next
        if seq - self.acked > self.slots:
            self.dropped += 1  # overwriting the oldest unconfirmed record
        meta = _be(seq, 4) + _be(len(payload), 2)
        self.f.seek((seq % self.slots) * self.size)
        self.f.write(MAGIC + meta + _be(crc16(meta + payload), 2) + payload)
        self.f.flush()
        self.next = seq + 1
        return seq

    def pending(self, limit=20, max_bytes=1500):
        """Oldest unconfirmed records still held: [(seq, payload)]."""
        out, size = [], 0
        seq = max(self.acked + 1, self.next - self.slots)
        while seq < self.next and len(out) < limit:
            got = self._slot(seq)
            if got is not None and got[0] == seq:  # else torn by a power cut mid-write: skipped
                if out and size + len(got[1]) > max_bytes:
                    break
                out.append(got)
                size += len(got[1])
            seq += 1
        return out

    def depth(self):
        return max(0, self.next - 1 - max(self.acked, self.next - 1 - self.slots))

    def ack(self, upto):
        """The gateway holds everything up to `upto`: forget it (persisted)."""
        upto = min(upto, self.next - 1)
        if upto <= self.acked:
            return
        self.acked = upto
        tmp = self.prefix + ".ack.tmp"
        with open(tmp, "w") as f:
            f.write("%d %d" % (upto, self.dropped))  # the drop count survives reboots with the watermark
        os.rename(tmp, self.prefix + ".ack")

    def close(self):
        self.f.close()
