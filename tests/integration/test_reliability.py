"""Reliability against the real broker (the ``reliability`` group; CI runs it with the rest):

* two workers share the input partitions; one is killed with SIGKILL in the middle of a
  replay; the survivor takes its partitions, restores their state from the changelogs, and at
  the end every VM has learned every one of its samples exactly once (re-delivered samples are
  recognised and skipped) and no incident id was published twice as opened;
* the broker is stopped and started again in the middle of a replay: the worker reconnects
  and finishes with no sample lost;
* the group's committed offset is moved past messages no worker learned (what a worker killed
  after Faust committed offsets of messages it skipped across a rebalance leaves behind): the
  next worker seeks back to the offset its restored state was learned to, and learns them.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.broker import LocalKafka, free_port
from streams.model_store import partition_for
from streams.settings import Settings
from tests.integration.helpers import WorkerProcess, learned, produce, read_all, wait_for

pytestmark = pytest.mark.reliability


def with_spikes(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fleet slice with a cpu and network spike at samples 320 and 370 of each VM (after
    the detector's warm-up of 300 samples), so that incidents open around the failure."""
    out, seen = [], Counter[str]()
    for m in samples:
        m = dict(m)
        seen[m["vm_id"]] += 1
        if seen[m["vm_id"]] >= 320 and (seen[m["vm_id"]] - 320) % 50 < 4:
            m["cpu_pct"] = 100.0
            m["net_rx_bytes_per_s"] = m["net_rx_bytes_per_s"] * 50 + 5e7
        out.append(m)
    return out


def test_a_killed_worker_loses_nothing_and_opens_nothing_twice(
        cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    settings = cluster_settings(partitions=4, session_timeout_s=8.0)
    survivor, victim = worker_factory(settings), worker_factory(settings)
    wait_for(lambda: all(w.get("/readyz")[0] == 200 for w in (survivor, victim)), 90,
             "both workers ready")
    samples = with_spikes(fleet_slice)
    per_vm = Counter(m["vm_id"] for m in samples)
    records = [(m["vm_id"].encode(), orjson.dumps(m)) for m in samples]
    half = len(records) // 2
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.metrics"),
                        records[:half]))
    wait_for(lambda: victim.counters().get("novacron_events_processed_total", 0) > 200, 60,
             "the victim to be busy")
    victim.stop(signal.SIGKILL)
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.metrics"),
                        records[half:]))

    def all_learned() -> bool:
        return all(learned(survivor, vm) == n for vm, n in per_vm.items())

    try:
        wait_for(all_learned, 120, "the survivor to learn every VM's every sample")
    except AssertionError:
        views = {vm: orjson.loads(survivor.get(f"/vms/{vm}")[1]) for vm in per_vm}
        seen = {vm: (v.get("samples_learned"), v.get("late_events_total"))
                for vm, v in views.items()}
        raise AssertionError(f"expected {dict(per_vm)} samples learned; (learned, late) on "
                             f"the survivor: {seen}\n{survivor.log_tail(20)}") from None
    time.sleep(2.0)  # let the last outputs land
    alerts = asyncio.run(read_all(settings.bootstrap_servers, settings.topic("vm.alerts"),
                                  settings.partitions))
    opened = Counter(a["incident_id"] for a in alerts if a["status"] == "open")
    assert opened, "the spikes opened incidents"
    assert max(opened.values()) == 1, [i for i, n in opened.items() if n > 1]
    assert all(learned(survivor, vm) == n for vm, n in per_vm.items()), "nothing twice"


def test_the_worker_rides_out_a_broker_restart(
        tmp_path: Path, settings_factory: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    kafka = LocalKafka(data_dir=tmp_path / "kafka", port=free_port()).start()
    try:
        settings = settings_factory(bootstrap_servers=kafka.bootstrap_servers, partitions=2)
        worker = worker_factory(settings)
        per_vm = Counter(m["vm_id"] for m in fleet_slice)
        records = [(m["vm_id"].encode(), orjson.dumps(m)) for m in fleet_slice]
        third = len(records) // 3
        asyncio.run(produce(kafka.bootstrap_servers, settings.topic("vm.metrics"),
                            records[:third]))
        wait_for(lambda: worker.counters().get("novacron_events_processed_total", 0) > 100,
                 60, "the worker to be busy")
        kafka.stop()
        time.sleep(3.0)
        kafka.start()
        asyncio.run(produce(kafka.bootstrap_servers, settings.topic("vm.metrics"),
                            records[third:]))
        wait_for(lambda: all(learned(worker, vm) == n for vm, n in per_vm.items()), 120,
                 "every sample learned after the restart")
        assert worker.proc.poll() is None, "the worker survived the outage"
    finally:
        kafka.stop()


async def commit(settings: Settings, topic: str, partition: int, offset: int) -> None:
    """Commit ``offset`` for the worker's consumer group (empty: its worker stopped)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                group_id=settings.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


def test_a_committed_offset_ahead_of_the_learned_state_is_read_again(
        cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    settings = cluster_settings(partitions=2)
    topic = settings.topic("vm.metrics")
    samples = [m for m in fleet_slice if m["vm_id"] == "vm-002"][:150]
    records = [(b"vm-002", orjson.dumps(m)) for m in samples]
    first = worker_factory(settings)
    asyncio.run(produce(settings.bootstrap_servers, topic, records[:100]))
    wait_for(lambda: learned(first, "vm-002") == 100, 60, "100 samples learned")
    first.stop()
    asyncio.run(produce(settings.bootstrap_servers, topic, records[100:]))
    # Offsets 100..119 are committed as if processed, but nobody learned them.
    asyncio.run(commit(settings, topic, partition_for(b"vm-002", 2), 120))

    second = worker_factory(settings)  # an empty data dir: state and mark from the changelog
    wait_for(lambda: learned(second, "vm-002") == 150, 60, "every sample learned")
    assert second.counters()["novacron_input_gaps_total"] == 1
    time.sleep(2.0)
    assert learned(second, "vm-002") == 150, "each learned once (repeats are recognised)"
