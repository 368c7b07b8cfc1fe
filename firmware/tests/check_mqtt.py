# MQTT client packet handling under the real MicroPython: well-formed packets, then a fuzz campaign of
# random and mutated packets from a misbehaving "broker". Any exception other than MQTTError is a crash.
# Prints "MQTT OK <packets> <rejected>".
import random
import sys

from svnode.mqtt import Client, MQTTError, _remaining, _str


class FakeSock:
    def __init__(self, data):
        self.data, self.pos, self.sent = data, 0, bytearray()

    def read(self, n):
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    def write(self, b):
        self.sent.extend(b)
        return len(b)

    def close(self):
        pass


def client_on(data):
    c = Client("t", "127.0.0.1", timeout_ms=50)
    c.sock = FakeSock(data)
    got = []
    c.on_message = lambda topic, payload, retained: got.append((topic, bytes(payload), retained))
    return c, got


def packet(head, body):
    return bytes((head,)) + _remaining(len(body)) + body


# well-formed: QoS 1 PUBLISH (retained) is delivered and acknowledged with its packet id
pub = packet(0x33, _str("svnode/n1/ack") + b"\x12\x34" + b'{"upto": 3}')
c, got = client_on(pub)
assert c._handle() == 3 and got == [("svnode/n1/ack", b'{"upto": 3}', True)], got
assert bytes(c.sock.sent) == b"\x40\x02\x12\x34", bytes(c.sock.sent)
c, got = client_on(packet(0x90, b"\x00\x07\x01"))
assert c._handle() == 9 and c._suback == 7 and c._granted == 1
c, got = client_on(packet(0x30, _str("t") + b"x" * 9000))  # bigger than max_packet
try:
    c._handle()
    raise AssertionError("an oversized packet was accepted")
except MQTTError:
    pass

seeds = [pub, packet(0x90, b"\x00\x07\x01"), packet(0x40, b"\x00\x05"), b"\xd0\x00", packet(0x30, _str("a/b") + b"hi")]
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
packets = rejected = 0
for _ in range(3000):
    r = random.getrandbits(8)
    if r < 100:
        data = bytes(random.getrandbits(8) for _ in range(random.getrandbits(6)))
    else:
        b = random.choice(seeds)  # MicroPython's bytearray has no del/insert: rebuild with slices
        for _ in range(1 + random.getrandbits(2)):
            op, at = random.getrandbits(2), random.getrandbits(16) % (len(b) + 1)
            if op == 0 and at < len(b):
                b = b[:at] + bytes((random.getrandbits(8),)) + b[at + 1:]
            elif op == 1 and at < len(b):
                b = b[:at] + b[at + 1:]
            elif op == 2:
                b = b[:at] + bytes((random.getrandbits(8),)) + b[at:]
            else:
                b = b[:at]
        data = b
    c, got = client_on(data)
    while True:
        packets += 1
        try:
            c._handle()
        except MQTTError:
            rejected += 1
            break
print("MQTT OK", packets, rejected)
