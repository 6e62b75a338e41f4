"""Real traces through a real worker on the real broker, outputs read back from their topics."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Callable
from typing import Any

import jsonschema
import orjson

from schemas.records import METRIC_FIELDS
from schemas.registry import schema_for
from streams.settings import Settings
from tests.integration.helpers import WorkerProcess, produce, read_all, wait_for

BAD_MESSAGES: list[tuple[str, bytes]] = [
    ("not_json", b"this is not json"),
    ("not_object", b"[1, 2, 3]"),
    ("missing_field", b'{"vm_id": "vm-001", "host_id": "host-01"}'),
    ("wrong_type", None),  # filled from a real message below
    ("negative_value", None),
    ("out_of_range", None),
    ("future_timestamp", None),
    ("too_large", b'{"vm_id": "' + b"x" * 70_000 + b'"}'),
]


def bad_messages(template: dict[str, Any]) -> list[tuple[str, bytes]]:
    variants = {
        "wrong_type": {**template, "cpu_pct": "high"},
        "negative_value": {**template, "net_rx_bytes_per_s": -5.0},
        "out_of_range": {**template, "cpu_pct": 140.0},
        "future_timestamp": {**template, "timestamp": 4_102_444_800.0},  # year 2100
    }
    return [(reason, raw if raw is not None else orjson.dumps(variants[reason]))
            for reason, raw in BAD_MESSAGES]


def with_injected_anomalies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Real samples, plus a cpu+network spike on vm-001 and sustained load on vm-002."""
    out, seen = [], Counter[str]()
    for msg in messages:
        msg = dict(msg)
        seen[msg["vm_id"]] += 1
        i = seen[msg["vm_id"]]
        if msg["vm_id"] == "vm-001" and 340 <= i < 346:
            msg["cpu_pct"] = 100.0
            msg["net_rx_bytes_per_s"] = msg["net_rx_bytes_per_s"] * 50 + 5e7
        if msg["vm_id"] == "vm-002" and i >= 250:
            msg["cpu_pct"] = 97.0
        out.append(msg)
    return out


def validate_all(topic: str, records: list[Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema_for(topic))
    for record in records:
        validator.validate(record)


def test_real_traces_flow_to_every_output_topic(
        cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    settings = cluster_settings(partitions=4)
    worker = worker_factory(settings)
    good = with_injected_anomalies(fleet_slice)
    bad = bad_messages(fleet_slice[0])
    records: list[tuple[bytes | None, bytes]] = [
        (m["vm_id"].encode(), orjson.dumps(m)) for m in good]
    # Dead letters are interleaved with good messages: the stream must keep flowing.
    for n, (_, raw) in enumerate(bad):
        records.insert(50 * n + 7, (b"vm-003", raw))
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.metrics"), records))

    def accounted() -> bool:
        c = worker.counters()
        done = c.get("novacron_events_processed_total", 0) + sum(
            v for k, v in c.items() if k.startswith("novacron_events_deadlettered_total{"))
        return done >= len(records)

    wait_for(accounted, 90, "every message to be processed or dead-lettered")
    c = worker.counters()
    metrics_in = f'novacron_events_in_total{{topic="{settings.topic("vm.metrics")}"}}'
    assert c[metrics_in] == len(records)
    assert c["novacron_events_processed_total"] == len(good)
    dead_total = sum(v for k, v in c.items()
                     if k.startswith("novacron_events_deadlettered_total{"))
    assert dead_total == len(bad), "messages in != processed + dead-lettered"

    def read(topic: str) -> list[Any]:
        return asyncio.run(read_all(settings.bootstrap_servers, settings.topic(topic),
                                    settings.partitions))

    wait_for(lambda: len(read("vm.deadletter")) == len(bad), 30, "the dead letters")
    dead = read("vm.deadletter")
    validate_all("vm.deadletter", dead)
    assert sorted(d["reason"] for d in dead) == sorted(r for r, _ in bad)
    originals = {raw for _, raw in bad}
    assert {base64.b64decode(d["payload_b64"]) for d in dead} == originals
    assert all(d["source_topic"] == settings.topic("vm.metrics") for d in dead)
    assert all(d["source_offset"] >= 0 and d["source_partition"] >= 0 for d in dead)

    alerts = read("vm.alerts")
    validate_all("vm.alerts", alerts)
    spike = [a for a in alerts if a["vm_id"] == "vm-001" and a["status"] == "open"
             and 340 <= _index_of(good, "vm-001", a["timestamp"]) < 350]
    assert spike, f"no incident opened on the injected spike; alerts: {alerts[:5]}"
    assert spike[0]["anomaly_class"] in {"cpu_spike", "network_saturation"}
    assert spike[0]["features"], "an alert must say which features explain it"
    opened = [a["incident_id"] for a in alerts if a["status"] == "open"]
    assert len(opened) == len(set(opened)), "an incident id was opened twice"

    forecasts = read("vm.forecasts")
    validate_all("vm.forecasts", forecasts)
    assert {f["metric"] for f in forecasts} == set(METRIC_FIELDS)
    assert {f["vm_id"] for f in forecasts} == {"vm-001", "vm-002", "vm-003", "vm-004"}
    for f in forecasts:
        assert [h["horizon_s"] for h in f["horizons"]] == [300.0, 900.0, 3600.0]
        for h in f["horizons"]:
            assert h["lower_90"] <= h["lower_80"] <= h["value"] <= h["upper_80"] <= h["upper_90"]

    validate_all("vm.drift", read("vm.drift"))  # drift events, when any, follow the schema

    recs = read("vm.recommendations")
    validate_all("vm.recommendations", recs)
    assert any(r["vm_id"] == "vm-002" and r["action"] == "scale_up" for r in recs)
    assert len({r["recommendation_id"] for r in recs}) == len(recs)


def _index_of(messages: list[dict[str, Any]], vm_id: str, timestamp: float) -> int:
    """1-based position of the VM's sample at ``timestamp``."""
    i = 0
    for m in messages:
        if m["vm_id"] == vm_id:
            i += 1
            if m["timestamp"] == timestamp:
                return i
    return -1
