"""After a broker restart the hub announces it is back, and devices re-send what was in flight at once.

Real mosquitto (restarted without persistence), the real hub worker and uplink. The ack timeout is ten
minutes: whatever arrives within the test's minute came because of the announcement, not the timeout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config.models import DeviceConfig, MqttConfig, SyncConfig
from edge_agent.store import Outbox
from edge_agent.sync.uplink import Uplink
from tests.helpers import Broker, hub_worker, wait_for

pytestmark = pytest.mark.broker


def test_batches_dropped_while_the_hub_resubscribes_are_sent_again_at_once(tmp_path: Path, broker: Broker) -> None:
    ob = Outbox(tmp_path / "ob.db")
    up = Uplink(ob, DeviceConfig(id="gate-br", site="westlake"), MqttConfig(url=broker.url),
                SyncConfig(ack_timeout_s=600, backoff_min_s=0.1, backoff_max_s=0.2, backlog_rate=0), boot=1)
    with hub_worker(tmp_path / "hub.db", broker, "hub-br") as hub:
        up.start()
        try:
            ob.put("transaction", "gate.pass", {"id": "before"})
            wait_for(lambda: ob.depth() == 0, 20, "the first record acked")
            hub.connected.clear()
            broker.kill()  # no persistence: the hub's subscription is gone
            for i in range(50):
                ob.put("transaction", "gate.pass", {"id": i})
            broker.start()
            # The device is back first and sends into a broker nobody has subscribed to yet.
            wait_for(lambda: up.stats.connects >= 2 and up.stats.records_sent >= 51, 30, "the device to re-send")
            wait_for(hub.connected.is_set, 30, "the hub to reconnect")
            wait_for(lambda: ob.depth() == 0, 60, "every record acked long before the ten-minute ack timeout")
            assert hub.backend.count() == 51
        finally:
            up.stop()
            ob.close()
