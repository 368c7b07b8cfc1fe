"""`edge-agent sim`: the demo simulators as a technician starts them, driven through stdin and their ptys."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import tomllib

import serial
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge_agent.drivers import turnstile as ts
from edge_agent.drivers.turnstile import TurnstileDriver
from edge_agent.registry import AgentConfig
from tests.helpers import Heard


def test_sim_cli_prints_working_ports_and_a_valid_config() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "sim", "--seconds", "30"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdin is not None and proc.stdout is not None
    lines: list[str] = []
    try:
        while not any(line.startswith("           { name") for line in lines):  # the last snippet line
            line = proc.stdout.readline()
            assert line, "sim ended early:\n" + "".join(lines)
            lines.append(line)
        ports = dict(re.findall(r"^(\w+)\s+(/dev/\S+)$", "".join(lines), re.M))
        assert set(ports) == {"turnstile", "scanner", "idreader", "display", "modbus"}
        # the printed config, with a real key in place of the placeholder, is a valid agent config
        key = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw,
                                                                                     PublicFormat.Raw)).decode()
        toml = "".join(lines).split("# agent config using them:\n", 1)[1].replace("<base64 Ed25519 public key>", key)
        cfg = AgentConfig.model_validate({"device": {"id": "demo-1", "site": "demo", "role": "gate"},
                                          **tomllib.loads(toml)})
        assert [p.type for p in cfg.producers] == ["gate", "toilet"]

        scanner = serial.Serial(ports["scanner"], 9600, timeout=2)
        proc.stdin.write("scan VT1.demo\n")
        proc.stdin.flush()
        assert scanner.readline() == b"VT1.demo\r\n"
        scanner.close()

        events = Heard()
        drv = TurnstileDriver(serial.Serial(ports["turnstile"], 9600, timeout=0.05), 1, events).start()
        drv.open(ts.IN, 1, timeout=2)
        walked = events.wait(lambda e: e.cmd == ts.PASSED, 5)
        drv.close()
        assert walked, "the simulated visitor never walked through"
        proc.stdin.write("nonsense\nquit\n")
        proc.stdin.flush()
        rest, _ = proc.communicate(timeout=10)
        assert "turnstile: OPEN in persons=1" in rest and "unknown or unavailable command" in rest
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
