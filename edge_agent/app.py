"""Agent wiring: outbox + uplink + producers + downlink commands under one supervisor."""

from __future__ import annotations

import copy
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_agent import __version__
from edge_agent.config.loader import ConfigError
from edge_agent.config.locked import locked_changes
from edge_agent.config.models import StoreConfig
from edge_agent.core import signed
from edge_agent.core.bus import LocalBus
from edge_agent.core.ports import CommandError, Context, Producer
from edge_agent.records import DataClass
from edge_agent.registry import REGISTRY, AgentConfig, Registry
from edge_agent.runtime import metrics, revert, systemd
from edge_agent.runtime.explain import explain
from edge_agent.runtime.logs import REDACTOR
from edge_agent.runtime.supervisor import Supervisor
from edge_agent.store import Outbox, StorePolicy
from edge_agent.store.counter import CounterFile
from edge_agent.sync.cmdauth import CommandAuth
from edge_agent.sync.downlink import CommandRouter
from edge_agent.sync.uplink import Uplink

logger = logging.getLogger(__name__)



def policy_of(store: StoreConfig) -> StorePolicy:
    return StorePolicy(
        budget_bytes=int(store.budget_mb * 1024 * 1024),
        ttl_s={DataClass.TRANSACTION: None, DataClass.MEASUREMENT: store.measurement_ttl_s,
               DataClass.STATE: store.state_ttl_s},
        hard_cap_bytes=int(store.hard_cap_mb * 1024 * 1024) if store.hard_cap_mb else None,
    )


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def overlay_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".remote.json")


def load_effective(config_path: Path, registry: Registry = REGISTRY) -> AgentConfig:
    """The technician's file plus the remote-config overlay the hub last applied."""
    cfg = registry.load_config(config_path)
    ov = overlay_path(config_path)
    if not ov.exists():
        return cfg
    try:
        patch = json.loads(ov.read_text())
        base = cfg.model_dump(mode="json")
        new = registry.config_model.model_validate(deep_merge(base, patch))
    except (ValueError, ValidationError) as err:
        logger.error("ignoring invalid remote overlay %s: %s", ov, err)
        return cfg
    locked = locked_changes(base, new.model_dump(mode="json"))
    if locked:  # an overlay from before these keys were locked, or edited by hand: the file wins
        logger.error("ignoring remote overlay %s: it changes locked keys %s", ov, locked)
        return cfg
    return new


def counter_path(store: StoreConfig) -> Path:
    """Where the last accepted command counter lives: beside the outbox (same disk, same 0700 directory)."""
    return Path(store.path).with_name(Path(store.path).name + ".cmd-counter")


class Agent:
    """One device agent. start() → run() → stop(); safe to construct in tests with a tmp store.

    Its roles come from `registry` (the shipped one unless a test brings its own) and share one Context:
    the outbox as sink, one local bus, the boot number."""

    def __init__(self, cfg: AgentConfig, config_path: Path | None = None, registry: Registry = REGISTRY) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.registry = registry
        self.started_at = time.time()
        self.supervisor = Supervisor()
        self.outbox = Outbox(cfg.store.path, policy_of(cfg.store))
        self.boot = self.outbox.boot
        self.ctx = Context(self.outbox, LocalBus(), self.boot)
        self.uplink: Uplink | None = None
        self.metrics_server: Any = None
        self._commands: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._cfg_lock = threading.Lock()
        hub_key = signed.load_public(cfg.commands.hub_key) if cfg.commands.hub_key else None
        if hub_key is None:
            logger.warning("no commands.hub_key: every downlink command will be refused")
        counter = CounterFile(counter_path(cfg.store), floor=signed.counter_floor(time.time()))
        auth = CommandAuth(hub_key, cfg.device.site, cfg.device.id, counter)
        self.router = CommandRouter({
            "ping": lambda args: {"pong": time.time(), "agent": __version__},
            "status": lambda args: self.status(),
            "config": self._cmd_config,
            "resync": self._cmd_resync,
        }, auth)
        if cfg.mqtt.password_env:
            REDACTOR.add(os.environ.get(cfg.mqtt.password_env))

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        logger.info("agent %s starting: device %s at %s, boot %d, outbox %s", __version__, self.cfg.device.id,
                    self.cfg.device.site, self.boot, self.cfg.store.path)
        self.supervisor.add("uplink", self._run_uplink)
        self.supervisor.add("maintenance", self._run_maintenance)
        self.supervisor.add("commands", self._run_commands)
        self._start_producers(self.cfg)
        self._start_metrics(self.cfg)

    def stop(self) -> None:
        systemd.notify("STOPPING=1")
        self.supervisor.stop_all()
        self._stop_metrics()
        self.outbox.close()
        logger.info("agent stopped")

    def run(self, duration: float | None = None, tick: Callable[[dict[str, Any]], None] | None = None,
            tick_s: float = 2.0, stop: threading.Event | None = None) -> int:
        """Main loop: systemd readiness and watchdog, periodic tick; returns the exit code."""
        stop = stop or threading.Event()
        systemd.notify("READY=1")
        wd = systemd.watchdog_interval()
        deadline = None if duration is None else time.monotonic() + duration
        next_tick = time.monotonic()
        healthy_at: float | None = time.monotonic() + self.cfg.commands.healthy_after_s
        while not stop.is_set():
            if self.supervisor.gave_up.is_set():
                for line in self.failures():
                    logger.error("giving up, exiting for the service manager: %s", line)
                return 1
            if healthy_at is not None and time.monotonic() >= healthy_at and self.supervisor.healthy():
                self._started_well()
                healthy_at = None
            if wd and self.supervisor.healthy():
                systemd.notify("WATCHDOG=1")
            if time.monotonic() >= next_tick:
                st = self.status()
                full = " OUTBOX FULL (disk): transactions refused" if st["store_full"] else ""
                systemd.notify(f"STATUS=queue {st['queue']} broker {st['broker']}{full}")
                if tick:
                    tick(st)
                next_tick = time.monotonic() + tick_s
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(min(wd or 0.5, 0.5))
        self._started_well()  # a clean stop is not a failed start
        return 0

    def _started_well(self) -> None:
        if self.config_path is not None:
            revert.started_well(overlay_path(self.config_path))

    # ---------------------------------------------------------------- workers

    def _run_uplink(self, stop: threading.Event) -> None:
        up = Uplink(self.outbox, self.cfg.device, self.cfg.mqtt, self.cfg.sync, boot=self.boot,
                    on_command=lambda name, payload: self._commands.put((name, payload)))
        self.uplink = up
        up.start()
        try:
            while not stop.wait(0.5):
                if not up.alive():
                    raise RuntimeError("uplink thread died")
        finally:
            up.stop()

    def _run_maintenance(self, stop: threading.Event) -> None:
        next_expire = 0.0
        while not stop.wait(1.0):
            now = time.monotonic()
            if now >= next_expire:
                self.outbox.expire()
                next_expire = now + self.cfg.store.maintenance_interval_s
            self.outbox.set_runtime({"pid": os.getpid(), "boot": self.boot, "agent": __version__,
                                     "broker_url": self.cfg.mqtt.url, "store_full": self.outbox.full,
                                     **self._uplink_view()})

    def _run_commands(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                name, payload = self._commands.get(timeout=0.5)
            except queue.Empty:
                continue
            result = self.router.handle(name, payload)
            if self.uplink is not None:
                self.uplink.publish_result(result)

    def _start_producers(self, cfg: AgentConfig) -> None:
        for pcfg in cfg.producers:
            prod: Producer = self.registry.build(pcfg, self.ctx)
            self.router.handlers.update(prod.commands())  # e.g. gate.allowlist
            self.supervisor.add(f"producer:{pcfg.name}", prod.run)

    def _stop_producers(self) -> None:
        for name in [n for n in self.supervisor.workers if n.startswith("producer:")]:
            self.supervisor.remove(name)

    def _start_metrics(self, cfg: AgentConfig) -> None:
        if cfg.metrics.enabled:
            self.metrics_server = metrics.serve(self, cfg.metrics.host, cfg.metrics.port)

    def _stop_metrics(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            self.metrics_server = None

    # ---------------------------------------------------------------- status and commands

    def status(self) -> dict[str, Any]:
        st = self.outbox.stats()
        return {
            "device": self.cfg.device.id, "site": self.cfg.device.site, "boot": self.boot,
            "queue": sum(c["depth"] for c in st["classes"].values()), "classes": st["classes"],
            "bytes": st["bytes"], "counters": st["counters"], "quarantined": st["quarantined"],
            "store_full": st["full"], "commands_refused": self.router.refused,
            **self._uplink_view(),
            "workers": {n: ("failed" if w.failed else "running") for n, w in self.supervisor.workers.items()},
        }

    def failures(self) -> list[str]:
        """One line per worker that exhausted its restart budget: which part, how often, the last error."""
        roles = {p.name: p.type for p in self.cfg.producers}
        sup = self.supervisor
        return [explain(w, roles, sup.max_restarts, sup.window_s) for w in sup.failed()]

    def _uplink_view(self) -> dict[str, Any]:
        """Broker connection and sync totals, for status, metrics and the runtime table."""
        up = self.uplink
        if up is None:
            return {"broker": "stopped", "refusal": None, "inflight": 0, "sent": 0, "acked": 0, "resends": 0,
                    "last_ack_at": 0}
        return {"broker": up.state.value, "refusal": up.refusal, "inflight": up.inflight(),
                "sent": up.stats.records_sent, "acked": up.stats.records_acked, "resends": up.stats.resends,
                "last_ack_at": up.stats.last_ack_at}

    def _cmd_resync(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.uplink is None:
            raise CommandError("uplink not running")
        self.uplink.resync()
        return {"queue": self.outbox.depth()}

    def _cmd_config(self, args: dict[str, Any]) -> dict[str, Any]:
        patch = args.get("patch")
        if not isinstance(patch, dict) or not patch:
            raise CommandError("args.patch must be a non-empty object")
        return self.apply_config(patch)

    def apply_config(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Validate a remote patch, apply it, persist it; on any failure roll back and raise CommandError.

        Locked keys (edge_agent/config/locked.py) are refused before anything else, so a patch that also
        fails validation or start-up never gets to touch them (nor a secret they name)."""
        with self._cfg_lock:
            old = self.cfg
            base = old.model_dump(mode="json")
            merged = deep_merge(base, patch)
            locked = locked_changes(base, merged)
            if locked:
                raise CommandError(f"locked keys cannot be changed remotely (set by provisioning): {locked}")
            try:
                new = self.registry.config_model.model_validate(merged)
            except ValidationError as err:
                issues = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
                raise CommandError(f"invalid config, not applied: {issues}") from None
            locked = locked_changes(base, new.model_dump(mode="json"))  # defaults of a role the patch adds
            if locked:
                raise CommandError(f"locked keys cannot be changed remotely (set by provisioning): {locked}")
            try:
                self._reconfigure(old, new)
                self.cfg = new
                self._persist_overlay(patch)
            except Exception as err:
                logger.error("applying remote config failed (%s): rolling back", err)
                try:
                    self._reconfigure(new, old)
                except Exception:
                    logger.exception("rollback of remote config failed")
                self.cfg = old
                raise CommandError(f"apply failed, rolled back: {err}") from err
        logger.info("remote config applied: %s", sorted(patch))
        return {"applied": sorted(patch)}

    def _reconfigure(self, old: AgentConfig, new: AgentConfig) -> None:
        if old.store != new.store:
            self.outbox.policy = policy_of(new.store)
        if old.log_level != new.log_level:
            logging.getLogger().setLevel(new.log_level)
        if old.metrics != new.metrics:
            self._stop_metrics()
            self._start_metrics(new)
        if old.producers != new.producers:
            self._stop_producers()
            self._start_producers(new)
        if (old.mqtt, old.sync) != (new.mqtt, new.sync):
            self.cfg = new  # the uplink worker reads its settings from self.cfg when (re)started
            stopped = self.uplink
            self.supervisor.remove("uplink")
            self.supervisor.add("uplink", self._run_uplink)
            # Command results leave through self.uplink: wait until the new worker has installed its uplink,
            # or this command's own result would be handed to the stopped one and lost.
            deadline = time.monotonic() + 5
            while self.uplink is stopped and time.monotonic() < deadline:
                time.sleep(0.005)

    def _persist_overlay(self, patch: dict[str, Any]) -> None:
        if self.config_path is None:
            return
        ov = overlay_path(self.config_path)
        current = json.loads(ov.read_text()) if ov.exists() else {}
        tmp = ov.with_name(ov.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(deep_merge(current, patch), indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, ov)
        revert.started_well(ov)  # it applied live: a new overlay gets its own tries at start-up


def load_or_exit(path: Path) -> AgentConfig:
    try:
        return load_effective(path)
    except ConfigError as err:
        for issue in err.issues:
            logger.error("%s: %s", err.source, issue)
        raise SystemExit(2) from None
