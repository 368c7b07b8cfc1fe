"""Configuration errors, CLI commands (run in subprocesses, as a technician would) and help texts."""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from edge_agent.cli import build_parser
from edge_agent.config import ConfigError
from edge_agent.core.backoff import Backoff, TokenBucket
from edge_agent.registry import AgentConfig, load_config
from edge_agent.runtime.supervisor import Supervisor
from hub.db import explain_gaps, subtract
from tests.helpers import Broker, wait_for

ROOT = Path(__file__).resolve().parents[1]

BAD_TOML = """\
[device]
id = "gate 01"
site = "westlake"

[store]
budget_mb = -1
colour = "red"

[[producers]]
type = "synthetic"
rate_per_s = "fast"
"""

BAD_YAML = """\
device:
  id: gate-01
  site: westlake
sync:
  window: 0
  compression: lz4
"""


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", *args], capture_output=True, text=True, timeout=timeout)


def test_toml_errors_name_key_path_line_and_value(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(BAD_TOML)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    got = {(i.path, i.line) for i in exc.value.issues}
    assert ("device.id", 2) in got and ("store.budget_mb", 6) in got and ("store.colour", 7) in got
    assert any(i.path.endswith("rate_per_s") and i.line == 11 and i.value == "fast" for i in exc.value.issues)


def test_yaml_errors_and_cli_exit_code(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD_YAML)
    out = run_cli("validate-config", str(f))
    assert out.returncode == 2
    assert "sync.window (line 5)" in out.stderr and "[value: 0]" in out.stderr
    assert "sync.compression (line 6)" in out.stderr and "'lz4'" in out.stderr


def test_unparseable_and_unknown_format(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("device: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(f)
    g = tmp_path / "x.ini"
    g.write_text("")
    with pytest.raises(ConfigError, match="toml, .yaml"):
        load_config(g)


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "edge_agent" / "examples").glob("*.toml")))
def test_shipped_examples_are_valid_and_build(example: str, tmp_path: Path) -> None:
    path = f"edge_agent/examples/{example}"
    out = run_cli("validate-config", path)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
    from edge_agent.core.ports import Context
    from edge_agent.registry import REGISTRY
    from edge_agent.store import Outbox

    cfg = load_config(ROOT / path)
    with Outbox(tmp_path / "o.db") as ob:
        for pcfg in cfg.producers:  # the role-level checks too: profiles, register names, keys
            assert REGISTRY.build(pcfg, Context(ob)).name == pcfg.name


def config_models(root: type[BaseModel]) -> set[type[BaseModel]]:
    """Every model a config file can reach from root: sections, each registered role's, and theirs."""
    import typing

    seen: set[type[BaseModel]] = set()
    todo: list[Any] = [root]
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            if t not in seen:
                seen.add(t)
                todo += [f.annotation for f in t.model_fields.values()]
        else:
            todo += typing.get_args(t)
    return seen


def test_every_config_field_has_a_description() -> None:
    models = config_models(AgentConfig)
    names = {m.__name__ for m in models}
    assert {"GateRoleConfig", "ToiletLimits", "LineConfig", "NodesConfig", "DisplayConfig", "TlsConfig"} <= names
    missing = [f"{m.__name__}.{f}" for m in models for f, info in m.model_fields.items() if not info.description]
    assert not missing, f"fields without description: {missing}"


def test_every_cli_command_and_option_has_help() -> None:
    from hub.cli import main as hub_main  # noqa: F401 - its parser is built inside main

    def walk(p: argparse.ArgumentParser) -> list[str]:
        bad = [f"{p.prog} {a.dest}" for a in p._actions
               if not a.help and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in a._choices_actions}
                bad += [f"{p.prog} {n} (no summary)" for n in a.choices if not helps.get(n)]
                for sub in a.choices.values():
                    bad += walk(sub)
        return bad

    assert walk(build_parser()) == []
    out = subprocess.run([sys.executable, "-m", "hub", "run", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--session-expiry" in out.stdout


def test_demo_without_broker_buffers_and_says_so(tmp_path: Path) -> None:
    out = run_cli("demo", "--duration", "5", "--broker", "mqtt://127.0.0.1:1", "--store", str(tmp_path / "d.db"))
    assert out.returncode == 0, out.stderr
    assert "no broker: buffering locally" in out.stdout
    buffered = int(out.stdout.split("done: ")[1].split()[0])
    assert buffered > 20


def test_demo_names_the_part_that_failed_and_why_and_exits_non_zero(tmp_path: Path) -> None:
    """The bug a newcomer met: scipy missing, the camera half crashed, the demo said `done` and exited 0. The
    machine without scipy is stood in for by a `scipy` on PYTHONPATH that fails to import as an absent one does."""
    fake = tmp_path / "site" / "scipy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'scipy'\", name='scipy')\n")
    out = subprocess.run([sys.executable, "-m", "edge_agent", "demo", "--duration", "60", "--no-hub", "--broker",
                          "mqtt://127.0.0.1:1", "--store", str(tmp_path / "d.db")], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert out.returncode == 1, out.stdout + out.stderr
    failed = [line for line in out.stderr.splitlines() if line.startswith("edge-agent demo FAILED:")]
    assert failed == ["edge-agent demo FAILED: the vision role 'north-cam' stopped: it failed 6 times in 60 s (last: "
                      "ModuleNotFoundError: No module named 'scipy') — the Python package 'scipy' is not installed; "
                      "it comes with the 'vision' extra: pip install -e '.[vision]'"], out.stderr
    assert "done:" not in out.stdout


def test_run_exits_non_zero_naming_the_role_that_gave_up(tmp_path: Path) -> None:
    """A gate whose turnstile adapter is not plugged in: the role fails to start, is restarted within its budget,
    then the agent exits 1 for the service manager, saying which role and why."""
    key = base64.b64encode(bytes(range(32))).decode()
    cfg, secret = tmp_path / "gate.toml", tmp_path / "allowlist.key"
    secret.write_text(os.urandom(16).hex())
    cfg.write_text(f'[device]\nid = "gate-01"\nsite = "westlake"\n[store]\npath = "{tmp_path / "o.db"}"\n'
                   '[mqtt]\nurl = "mqtt://127.0.0.1:1"\n[[producers]]\ntype = "gate"\nname = "north"\n'
                   f'venue = "westlake"\npublic_key = "{key}"\ncapacity = 10\nstate_dir = "{tmp_path / "g"}"\n'
                   f'allowlist_key_file = "{secret}"\n'
                   f'[[producers.lanes]]\nname = "a"\nturnstile = "{tmp_path / "ttyUSB-unplugged"}"\n')
    t0 = time.monotonic()
    out = run_cli("run", "--config", str(cfg), "--duration", "60", timeout=90)
    assert out.returncode == 1 and time.monotonic() - t0 < 45, out.stderr[-2000:]
    gave_up = [line for line in out.stderr.splitlines() if "giving up, exiting" in line]
    assert len(gave_up) == 1 and "the gate role 'north' stopped: it failed 6 times in 60 s" in gave_up[0]
    assert "could not open port" in gave_up[0] and "ttyUSB-unplugged" in gave_up[0], gave_up


def test_status_and_doctor(tmp_path: Path, broker: Broker) -> None:
    from tests.helpers import agent_config

    cfg = agent_config(tmp_path, "mqtt://127.0.0.1:1", rate=50)  # nothing listens on port 1
    run = run_cli("run", "--config", str(cfg), "--duration", "4")
    assert run.returncode == 0, run.stderr
    st = run_cli("status", "--config", str(cfg), "--json")
    doc = json.loads(st.stdout)
    assert doc["classes"]["transaction"]["depth"] > 50 and doc["classes"]["transaction"]["oldest_age_s"] > 0
    assert doc["runtime"]["broker"] in ("disconnected", "connecting", "stopped")
    assert doc["agent"] == "not running"  # the run ended: its pid is gone
    human = run_cli("status", "--config", str(cfg))
    assert "oldest unsent" in human.stdout and "broker:" in human.stdout and "agent: not running" in human.stdout
    live = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config", str(cfg), "--duration", "20"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: json.loads(run_cli("status", "--config", str(cfg), "--json").stdout)["agent"] == "running",
                 15, "status to see the agent running")
    finally:
        live.terminate()
        live.wait(30)
    doc_fail = run_cli("doctor", "--config", str(cfg))
    assert doc_fail.returncode == 1 and "FAIL  broker" in doc_fail.stdout and "fsync latency" in doc_fail.stdout
    good = agent_config(tmp_path, broker.url, rate=None, name="ok")
    doc_ok = run_cli("doctor", "--config", str(good))
    assert doc_ok.returncode == 0, doc_ok.stdout
    assert "OK    broker" in doc_ok.stdout and "OK    outbox integrity" in doc_ok.stdout


def test_backoff_grows_with_full_jitter_and_resets() -> None:
    b = Backoff(1, 30, random.Random(1))
    delays = [b.next() for _ in range(8)]
    caps = [1, 2, 4, 8, 16, 30, 30, 30]
    assert all(c / 2 <= d <= c for d, c in zip(delays, caps, strict=True))
    assert len({round(d, 6) for d in delays}) == 8, "jitter: no two devices wait the same"
    b.reset()
    assert b.next() <= 1
    with pytest.raises(ValueError):
        Backoff(5, 1)


def test_token_bucket_paces() -> None:
    now = [0.0]
    tb = TokenBucket(100, 50, lambda: now[0])
    assert tb.available() == 50
    tb.take(50)
    assert tb.available() == 0
    now[0] += 0.2
    assert tb.available() == 20
    assert TokenBucket(0, 1, lambda: 0.0).available() > 10**6


def test_supervisor_restarts_within_budget_then_gives_up() -> None:
    runs = []

    def flaky(stop: threading.Event) -> None:
        runs.append(1)
        raise RuntimeError("sensor glitch")

    sup = Supervisor(max_restarts=3, window_s=60, delay_s=0.01)
    sup.add("flaky", flaky)
    assert sup.gave_up.wait(5)
    assert len(runs) == 4 and sup.workers["flaky"].failed and not sup.healthy()
    ok = Supervisor(delay_s=0.01)
    ok.add("steady", lambda stop: stop.wait())
    assert ok.healthy()
    ok.stop_all()


def test_gap_accounting() -> None:
    assert subtract([[1, 10]], [(3, 4), (8, 12)]) == [[1, 2], [5, 7]]
    raw = [(5, 9), (20, 20), (31, 99)]
    # 5-9 dropped on purpose (budget), 31-99 is the jump to a new epoch starting at 100
    assert explain_gaps(raw, [(5, 9)], {1, 100}) == [[20, 20]]
