"""Prometheus metrics, read from the agent at scrape time (no update loop to keep in step)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class AgentCollector(Collector):
    def __init__(self, agent: Any) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Any]:
        st = self.agent.status()
        depth = GaugeMetricFamily("venue_outbox_depth", "Records waiting in the outbox", labels=["class"])
        age = GaugeMetricFamily("venue_outbox_oldest_age_seconds", "Age of the oldest unsent record",
                                labels=["class"])
        for cls, c in st["classes"].items():
            depth.add_metric([cls], c["depth"])
            age.add_metric([cls], c["oldest_age_s"])
        yield depth
        yield age
        yield GaugeMetricFamily("venue_outbox_bytes", "Bytes of queued records", value=st["bytes"])
        dropped = CounterMetricFamily("venue_outbox_dropped", "Records dropped on purpose", labels=["class", "reason"])
        for name, value in st["counters"].items():
            parts = name.split(".")
            if parts[0] == "dropped" and len(parts) == 3:
                dropped.add_metric(parts[1:], value)
        yield dropped
        yield CounterMetricFamily("venue_uplink_sent_records", "Records published", value=st["sent"])
        yield CounterMetricFamily("venue_uplink_acked_records", "Records acknowledged by the hub",
                                  value=st["acked"])
        yield GaugeMetricFamily("venue_uplink_inflight_batches", "Batches awaiting an ack", value=st["inflight"])
        yield GaugeMetricFamily("venue_broker_connected", "1 when connected to the broker",
                                value=1 if st["broker"] == "connected" else 0)
        yield GaugeMetricFamily("venue_agent_boot", "Boot counter of this device", value=st["boot"])
        yield GaugeMetricFamily("venue_outbox_quarantined_files", "Corrupt databases kept for upload",
                                value=len(st["quarantined"]))
        yield CounterMetricFamily("venue_commands_refused", "Downlink commands refused: unsigned, forged, "
                                  "expired, replayed or for another device", value=st["commands_refused"])


def serve(agent: Any, host: str, port: int) -> Any:
    """Start the HTTP endpoint; returns the server (shutdown() stops it). Raises OSError if the port is taken."""
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
