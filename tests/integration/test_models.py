"""Model versions against the real broker: ``novacron models checkpoint`` snapshots what a
running worker learned; after more (here: different) data, ``novacron models rollback 1``
makes the running worker restore every VM to that version, and it then continues exactly as a
run that never saw the data in between. A snapshot that fails its signature is refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from agents.metrics_agent import pipeline_config
from agents.pipeline import new_state, process_event, vm_view
from schemas.records import MetricEvent
from streams.model_store import partition_for, read_catalog
from streams.models import snapshot_key
from streams.runner import settings_env
from streams.settings import Settings
from tests.integration.helpers import REPO, WorkerProcess, learned, produce, wait_for

VMS = ("vm-001", "vm-002")


def novacron(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", "models", *args],
                          env={**os.environ, **settings_env(settings)}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


async def forge_snapshot(settings: Settings, vm_id: str, version: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic("vm.model-snapshots"), b"\x01" + b"\x00" * 32 + b"not ours",
            key=snapshot_key(vm_id, version),
            partition=partition_for(vm_id.encode(), settings.partitions))
    finally:
        await producer.stop()


def test_rollback_takes_effect_on_a_running_worker(
        cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    settings = cluster_settings(partitions=2)
    per_vm = {vm: [m for m in fleet_slice if m["vm_id"] == vm][:300] for vm in VMS}
    worker = worker_factory(settings)
    topic = settings.topic("vm.metrics")

    def send(lo: int, hi: int) -> None:
        asyncio.run(produce(settings.bootstrap_servers, topic, [
            (vm.encode(), orjson.dumps(m)) for vm in VMS for m in per_vm[vm][lo:hi]]))

    send(0, 150)
    wait_for(lambda: all(learned(worker, vm) == 150 for vm in VMS), 60, "150 samples learned")
    done = novacron(settings, "checkpoint")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "checkpoint 1: 2 VMs in 2 partitions"

    send(150, 250)  # learned after the checkpoint, then rolled back
    wait_for(lambda: all(learned(worker, vm) == 250 for vm in VMS), 60, "250 samples learned")
    done = novacron(settings, "rollback", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "rolled back 2 VMs to version 1 in 2 partitions"
    assert all(learned(worker, vm) == 150 for vm in VMS), "restored to version 1"

    send(250, 300)  # the running worker continues from version 1
    wait_for(lambda: all(learned(worker, vm) == 200 for vm in VMS), 60, "learning resumed")
    cfg = pipeline_config(settings)
    for vm in VMS:
        state = new_state(cfg)
        for m in per_vm[vm][:150] + per_vm[vm][250:300]:
            process_event(state, MetricEvent.from_dict(m), cfg)
        expected = orjson.loads(orjson.dumps(vm_view(vm, state), default=str))
        got = orjson.loads(worker.get(f"/vms/{vm}")[1])
        assert got["features"] == expected["features"], vm
        assert got["forecasts"] == expected["forecasts"], vm

    listing = novacron(settings, "list")
    assert listing.returncode == 0, listing.stderr
    row = listing.stdout.splitlines()[1].split()
    assert row[0] == "1" and row[4:6] == ["2", "2"] and row[6] == "300", listing.stdout
    assert "rolled back to" in listing.stdout
    shown = orjson.loads(novacron(settings, "show", "1").stdout)
    assert shown["kind"] == "vm-models" and shown["parameters"]["detector"]
    assert shown["metrics"]["samples_learned"] == 300
    assert 0 < shown["metrics"]["forecast_wape:cpu_pct"] < 1

    # A snapshot someone else wrote (without the signing key) is refused, not loaded.
    asyncio.run(forge_snapshot(settings, "vm-001", 1))
    done = novacron(settings, "rollback", "1")
    assert done.returncode == 1
    assert "rolled back 1 VMs to version 1" in done.stdout
    assert "1 snapshots refused" in done.stdout
    assert learned(worker, "vm-001") == 200, "the refused VM kept its state"
    assert learned(worker, "vm-002") == 150

    missing = novacron(settings, "rollback", "7")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "novacron: no model version 7 (versions: 1)"


def test_the_leader_takes_checkpoints_on_its_timer(
        cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    settings = cluster_settings(partitions=2, checkpoint_interval_s=3.0)
    worker = worker_factory(settings)
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.metrics"), [
        (m["vm_id"].encode(), orjson.dumps(m)) for m in fleet_slice[:100]]))
    wait_for(lambda: worker.counters().get("novacron_events_processed_total", 0) >= 100, 60,
             "the samples to be processed")

    def timer_version_complete() -> bool:
        cat = asyncio.run(read_catalog(settings))
        return any(e.model.source == "timer" and e.complete(2) and e.vms == 4
                   for e in cat.versions.values())

    wait_for(timer_version_complete, 60, "a complete version taken by the leader's timer")
    assert worker.counters()["novacron_model_checkpoints_total"] >= 2
