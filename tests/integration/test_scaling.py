"""Scaling through two real workers on the real broker: VMs report to their hosts, a VM that
outgrows its full host is told to migrate to a host with room (never to one the move would
overcommit, never next to a VM of its anti-affinity group), and the scheduler can ask either
worker about any VM or host (table-routed views, 404 for unknown ids)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import orjson
import pytest

from schemas.registry import schema_for
from streams.settings import Settings
from tests.integration.helpers import WorkerProcess, produce, read_all, wait_for

GIB = float(2**30)
STEP_S = 300.0


def sample(vm: str, host: str, t: float, *, vcpus: int, total_gib: float, used_gib: float,
           cpu_pct: float = 20.0, group: str | None = None) -> dict[str, Any]:
    return {"vm_id": vm, "host_id": host, "timestamp": t, "cpu_pct": cpu_pct,
            "memory_used_bytes": used_gib * GIB, "memory_total_bytes": total_gib * GIB,
            "vcpus": vcpus, "disk_read_bytes_per_s": 0.0, "disk_write_bytes_per_s": 0.0,
            "net_rx_bytes_per_s": 1e4, "net_tx_bytes_per_s": 1e4, "anti_affinity_group": group}


def fleet(t: float, grower_gib: float) -> list[dict[str, Any]]:
    """host-a is full (16 of 16 GiB held); host-b has room but runs vm-b2 of the grower's
    anti-affinity group; host-c has room."""
    return [
        sample("vm-a1", "host-a", t, vcpus=2, total_gib=6, used_gib=5),
        sample("vm-a2", "host-a", t, vcpus=2, total_gib=10, used_gib=grower_gib, group="db"),
        sample("vm-b1", "host-b", t, vcpus=2, total_gib=2, used_gib=1),
        sample("vm-b2", "host-b", t, vcpus=2, total_gib=2, used_gib=1, group="db"),
        sample("vm-c1", "host-c", t, vcpus=2, total_gib=4, used_gib=3),
    ]


def test_migration_and_table_routed_views_with_two_workers(
        cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess]) -> None:
    secret = "integration-secret-key-0123456789"
    settings = cluster_settings(partitions=4, host_cpu_cores=8.0, host_memory_bytes=16 * GIB,
                                stabilization_s=0.0, cooldown_s=0.0,
                                host_report_interval_s=0.0, state_signing_key=secret)
    workers = [worker_factory(settings), worker_factory(settings)]
    wait_for(lambda: all(w.get("/readyz")[0] == 200 for w in workers), 90,
             "both workers ready after the rebalance")
    topic = settings.topic("vm.metrics")
    start = time.time() - 40 * STEP_S

    def send(rows: list[dict[str, Any]]) -> None:
        asyncio.run(produce(settings.bootstrap_servers, topic,
                            [(r["vm_id"].encode(), orjson.dumps(r)) for r in rows]))

    # Phase 1: a steady day-part; every VM reports to its host.
    send([r for i in range(20) for r in fleet(start + i * STEP_S, grower_gib=1.0)])

    def host_known(host: str, vms: int) -> bool:
        status, body = workers[0].get(f"/hosts/{host}")
        return status == 200 and len(orjson.loads(body)["vms"]) == vms

    wait_for(lambda: host_known("host-a", 2) and host_known("host-b", 2)
             and host_known("host-c", 1), 60, "the hosts tables")
    time.sleep(2.0)  # the host-directory GlobalTable reaches every worker

    # Phase 2: vm-a2's memory jumps to 9 GiB: its target no longer fits on host-a.
    send([r for i in range(20, 26) for r in fleet(start + i * STEP_S, grower_gib=9.0)])

    def recommendations() -> list[dict[str, Any]]:
        return asyncio.run(read_all(settings.bootstrap_servers,
                                    settings.topic("vm.recommendations"), settings.partitions))

    wait_for(lambda: any(r["action"] == "migrate" for r in recommendations()), 60,
             "a migrate recommendation")
    recs = recommendations()
    validator = jsonschema.Draft202012Validator(schema_for("vm.recommendations"))
    for r in recs:
        validator.validate(r)
        assert r["valid_until"] > r["timestamp"] and r["recommendation_id"].startswith("rec-")
    migrate = next(r for r in recs if r["action"] == "migrate")
    assert migrate["vm_id"] == "vm-a2" and migrate["host_id"] == "host-a"
    # host-b has the room but holds vm-b2 of the same anti-affinity group: host-c it is.
    assert migrate["target_host"] == "host-c", migrate
    assert migrate["target_memory_bytes"] >= 9 * GIB
    assert migrate["target_memory_bytes"] + 4 * GIB <= 16 * GIB, "no overcommitted target"
    assert any("anti" not in reason and "host-c" in reason for reason in migrate["reasons"])
    assert {r["action"] for r in recs} >= {"scale_down", "migrate"}

    # Either worker answers for any VM or host: the one that owns the key, or by forwarding.
    for w in workers:
        status, body = w.get("/vms/vm-a2")
        assert status == 200, body
        view = orjson.loads(body)
        assert view["vm_id"] == "vm-a2" and view["host_id"] == "host-a"
        assert view["recommendation"]["recommendation_id"] == recs[-1]["recommendation_id"] \
            or view["recommendation"]["vm_id"] == "vm-a2"
        assert view["pattern"] and view["forecasts"] and view["features"]
        status, body = w.get("/hosts/host-c")
        assert status == 200, body
        host = orjson.loads(body)
        assert host["capacity"]["memory_bytes"] == 16 * GIB
        assert set(host["vms"]) == {"vm-c1"}
        assert host["headroom"]["memory_bytes"] == 12 * GIB
        assert w.get("/vms/vm-nobody")[0] == 404
        assert w.get("/hosts/host-nowhere")[0] == 404
        # The status page's drill-down is routed the same way (the board of the owner).
        status, body = w.get("/status/vms/vm-a2")
        assert status == 200, body
        drill = orjson.loads(body)
        assert len(drill["timestamps"]) == 26  # samples kept as float32: 7 digits
        assert drill["series"]["memory_used_bytes"][-1] == pytest.approx(9 * GIB, rel=1e-6)
        assert w.get("/status/vms/vm-nobody")[0] == 404
    # The VMs fall in partitions 0, 2 and 3 of 4 (murmur2), so both workers own some of
    # them, and one of the two answers about vm-a2 (partition 2) above was forwarded.
    owned = [w.counters().get("novacron_events_processed_total", 0.0) for w in workers]
    assert sum(owned) == 26 * 5 and min(owned) > 0, owned

    # What an SRE scrapes: every series the dashboard plots is served by both workers.
    scraped = [w.counters() for w in workers]
    for c in scraped:
        names = {k.split("{")[0] for k in c}
        assert {"novacron_end_to_end_seconds_count", "novacron_vm_state_bytes_count",
                "novacron_batch_processing_seconds_count", "novacron_consumer_lag_messages",
                "novacron_vm_patterns"} <= names, sorted(names)
    assert sum(c.get('novacron_recommendations_total{action="migrate"}', 0.0)
               for c in scraped) >= 1
    assert sum(c.get("novacron_host_reports_total", 0.0) for c in scraped) >= 26 * 5
    assert sum(c.get("novacron_end_to_end_seconds_count", 0.0) for c in scraped) == 26 * 5
    assert all(v >= 0 for c in scraped for k, v in c.items()
               if k.startswith("novacron_consumer_lag_messages"))

    # Structured logs: JSON lines carrying the ids, and never the signing key.
    lines = [line for w in workers for line in w.log_path.read_text().splitlines()]
    records = []
    for line in lines:
        assert secret not in line
        if line.startswith("{"):
            records.append(orjson.loads(line))
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("vm_id") == "vm-a2" and r.get("recommendation_id")
               and r["message"] == "migrate to host-c" for r in records), records[-5:]
