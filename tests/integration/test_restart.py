"""Learned state survives a worker restart: a worker learns part of a real trace and stops; a
new worker process, with an empty data dir, restores the VM's state from the table's changelog,
and after the next sample the VM's features, forecasts and pattern are exactly those of an
uninterrupted run of the same code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from agents.metrics_agent import pipeline_config
from agents.pipeline import new_state, process_event, vm_view
from schemas.records import MetricEvent
from streams.settings import Settings
from tests.integration.helpers import WorkerProcess, produce, wait_for


def test_a_restarted_worker_continues_from_where_it_was(
        cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    settings = cluster_settings(partitions=2)
    samples = [m for m in fleet_slice if m["vm_id"] == "vm-002"][:300]
    records = [(b"vm-002", orjson.dumps(m)) for m in samples]
    first = worker_factory(settings)
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.metrics"),
                        records[:-1]))
    wait_for(lambda: first.counters().get("novacron_events_processed_total", 0)
             >= len(records) - 1, 60, "the first part to be processed")
    first.stop()  # SIGTERM: a clean stop

    second = worker_factory(settings)  # a fresh data dir: the state comes from the changelog
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.metrics"),
                        records[-1:]))
    wait_for(lambda: second.counters().get("novacron_events_processed_total", 0) >= 1, 60,
             "the next sample to be processed by the restarted worker")
    status, body = second.get("/vms/vm-002")
    assert status == 200
    restarted = orjson.loads(body)

    cfg = pipeline_config(settings)
    state = new_state(cfg)
    for m in samples:
        process_event(state, MetricEvent.from_dict(m), cfg)
    uninterrupted = orjson.loads(orjson.dumps(vm_view("vm-002", state), default=str))
    assert restarted["samples_learned"] == len(samples)
    assert restarted["forecasts"] == uninterrupted["forecasts"]
    assert restarted["features"] == uninterrupted["features"]
    assert restarted["pattern"] == uninterrupted["pattern"]
