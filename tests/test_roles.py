"""Roles as plugins: a tiny role registered with one line runs through the agent (README, "Add a role"), and the
registry keeps role configs light and their types consistent."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field

from edge_agent.app import Agent
from edge_agent.config import ConfigError
from edge_agent.config.models import RoleConfig
from edge_agent.core.ports import CommandError, Context, Handler
from edge_agent.records import DataClass
from edge_agent.registry import REGISTRY, ROLES, Registry, Role
from tests.helpers import outbox_records, wait_for
from tests.signing import HUB_PUB, signed


class ChimeConfig(RoleConfig):
    """A door chime: says hello when it starts, rings on a downlink command and on the local bus."""

    type: Literal["chime"] = Field(description="Role name.")
    name: str = Field("chime", description="Worker name.")
    tune: str = Field("ding-dong", min_length=1, max_length=16, description="What it plays.")


class Chime:
    def __init__(self, cfg: ChimeConfig, ctx: Context) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, cfg.name

    def commands(self) -> dict[str, Handler]:
        return {"chime.ring": self._ring}

    def _ring(self, args: dict[str, Any]) -> dict[str, Any]:
        times = args.get("times", 1)
        if not isinstance(times, int) or not 1 <= times <= 3:
            raise CommandError("times must be 1..3")
        for _ in range(times):
            self.ctx.sink.put(DataClass.TRANSACTION, "chime.rang", {"chime": self.name, "tune": self.cfg.tune})
        return {"rang": times}

    def run(self, stop: threading.Event) -> None:
        self.ctx.sink.put(DataClass.STATE, "chime.ready", {"chime": self.name, "tune": self.cfg.tune,
                                                           "boot": self.ctx.boot}, key=f"chime:{self.name}")
        cancel = self.ctx.bus.subscribe("door/open", lambda _: self._ring({}))
        try:
            stop.wait()
        finally:
            cancel()


WITH_CHIME = Registry({**ROLES, "chime": Role(ChimeConfig, f"{__name__}:Chime")})  # the one line


def test_a_role_registered_with_one_line_runs_through_the_agent(tmp_path: Path) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text(f'[device]\nid = "door-1"\nsite = "westlake"\n[store]\npath = "{tmp_path / "o.db"}"\n'
                    f'[mqtt]\nurl = "mqtt://127.0.0.1:1"\n[commands]\nhub_key = "{HUB_PUB}"\n'
                    '[[producers]]\ntype = "chime"\nname = "front"\n'
                    '[[producers]]\ntype = "synthetic"\nrate_per_s = 50\nlimit = 3\n')
    cfg = WITH_CHIME.load_config(conf)
    agent = Agent(cfg, conf, registry=WITH_CHIME)
    agent.start()
    try:
        ob = agent.outbox
        ready = wait_for(lambda: outbox_records(ob, DataClass.STATE, "chime.ready"), 10, "the chime to start")
        assert ready == [{"chime": "front", "tune": "ding-dong", "boot": agent.boot}]
        # its downlink command is routed by the agent; bad arguments come back as the role's own error
        ok = agent.router.handle("chime.ring", signed("westlake", "door-1", "chime.ring", {"times": 2}, "c1"))
        bad = agent.router.handle("chime.ring", signed("westlake", "door-1", "chime.ring", {"times": 9}, "c2"))
        assert ok["ok"] and ok["result"] == {"rang": 2} and not bad["ok"] and bad["error"] == "times must be 1..3"
        agent.ctx.bus.publish("door/open", {})  # another role's event on the agent's bus
        wait_for(lambda: len(outbox_records(ob, DataClass.TRANSACTION, "chime.rang")) == 3, 10, "three rings")
        # remote config of the new role is validated against the same registry and restarts it
        refused = agent.router.handle("config", signed("westlake", "door-1", "config", {"patch": {"producers": [
            {"type": "chime", "name": "front", "tune": "x" * 40}]}}, "c3"))
        assert not refused["ok"] and "tune" in refused["error"]
        assert agent.apply_config({"producers": [{"type": "chime", "name": "front", "tune": "westminster"}]})
        wait_for(lambda: any(r["tune"] == "westminster" for r in outbox_records(ob, DataClass.STATE, "chime.ready")),
                 10, "the chime restarted with its new tune")
        assert agent.supervisor.healthy() and "producer:front" in agent.status()["workers"]
    finally:
        agent.stop()


def test_the_registry_is_the_only_way_in(tmp_path: Path) -> None:
    conf = tmp_path / "a.toml"
    conf.write_text('[device]\nid = "d"\nsite = "s"\n\n[[producers]]\ntype = "chime"\ntune = ""\n')
    with pytest.raises(ConfigError) as err:  # the shipped registry has no chime
        REGISTRY.load_config(conf)
    assert any(i.path == "producers.0" and i.line == 5 and "chime" in i.message for i in err.value.issues), err.value
    with pytest.raises(ConfigError) as err:  # with it registered, its own fields are checked, with their line
        WITH_CHIME.load_config(conf)
    assert [(i.path, i.line) for i in err.value.issues] == [("producers.0.chime.tune", 7)]
    with pytest.raises(ValueError, match="Literal\\['bell'\\]"):
        Registry({"bell": Role(ChimeConfig, f"{__name__}:Chime")})  # key and model disagree
    with pytest.raises(ValueError, match="unknown producer type 'chime'"):
        REGISTRY.build(WITH_CHIME.config_model.model_validate(
            {"device": {"id": "d", "site": "s"}, "producers": [{"type": "chime"}]}).producers[0], Context(None))  # type: ignore[arg-type]


def test_role_configs_load_without_heavy_packages() -> None:
    """validate-config and the agent's start-up read every role's model: none may pull in a driver stack."""
    heavy = ("cv2", "numpy", "onnxruntime", "scipy", "serial", "paho", "pymodbus", "cryptography", "zxingcpp",
             "sqlite3")
    code = ("import sys, edge_agent.registry as r; r.load_config; "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
