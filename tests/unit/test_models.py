"""Model versions without Kafka: catalog records, their JSON Schemas, evaluation metrics,
the partitioner, idle-VM expiry and the ``novacron models`` argument errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from jsonschema import Draft202012Validator

from agents.metrics_agent import pipeline_config
from agents.pipeline import new_state, process_event
from agents.processor import Inbound, MetricsProcessor
from agents.state_layout import state_codec
from schemas.records import MetricEvent
from streams.cli import main
from streams.model_store import partition_for
from streams.models import (
    Catalog,
    Command,
    ModelVersion,
    PartitionReport,
    RollbackReport,
    evaluate,
    parse_snapshot_key,
    snapshot_key,
    summarize,
    version_key,
)
from streams.observability import WorkerMetrics
from streams.settings import Settings

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_every_catalog_record_matches_its_schema() -> None:
    catalog, commands = validator("vm.models.v1.schema.json"), \
        validator("vm.model-commands.v1.schema.json")
    records: list[Any] = [
        ModelVersion(2, "vm-models", {"detector": "x"}, 10.0, "timer"),
        PartitionReport(2, 1, 3, {"vms": 3.0, "samples_learned": 90.0}, 11.0),
        RollbackReport("abc", 2, 1, 3, 0, 12.0),
        Command("rollback", 2, "abc", 12.0),
    ]
    for record in records:
        doc = json.loads(record.to_json())
        assert list(catalog.iter_errors(doc)) == [], record
    for command in (Command("checkpoint", 2, "abc", 12.0, keep=5), Command("rollback", 2,
                                                                           "abc", 12.0)):
        assert list(commands.iter_errors(json.loads(command.to_json()))) == []
    assert list(commands.iter_errors({"command": "delete", "version": 1, "request_id": "a",
                                      "requested_at": 1.0}))


def test_the_catalog_is_rebuilt_from_its_records() -> None:
    records: list[tuple[bytes, bytes | None]] = [
        (version_key(1), ModelVersion(1, "vm-models", {}, 10.0).to_json()),
        (b"v00000001/p0", PartitionReport(1, 0, 2, {"vms": 2, "samples_learned": 10}, 11.0)
         .to_json()),
        (b"v00000001/p1", PartitionReport(1, 1, 1, {"vms": 1, "samples_learned": 5}, 11.0)
         .to_json()),
        (version_key(2), ModelVersion(2, "vm-models", {}, 20.0).to_json()),
        (b"v00000002/p0", PartitionReport(2, 0, 2, {"vms": 2}, 21.0).to_json()),
        (b"rollback-r1", Command("rollback", 1, "r1", 30.0).to_json()),
        (b"rollback-r1/p0", RollbackReport("r1", 1, 0, 2, 0, 31.0).to_json()),
        (b"v00000009", b"not json"),  # skipped, not fatal
        (version_key(2), None),  # a tombstone drops version 2
    ]
    cat = Catalog.from_records(records)
    assert sorted(cat.versions) == [1]
    entry = cat.versions[1]
    assert entry.complete(partitions=2) and not entry.complete(partitions=3)
    assert entry.vms == 3 and entry.metrics()["samples_learned"] == 15
    assert cat.next_version() == 2
    assert cat.last_rollback() == ("r1", 1, 30.0)
    assert cat.rollback_reports["r1"][0].restored == 2


def test_snapshot_keys_round_trip() -> None:
    assert parse_snapshot_key(snapshot_key("vm@host-1", 12)) == ("vm@host-1", 12)
    assert parse_snapshot_key(b"vm-1") is None
    assert parse_snapshot_key(b"vm-1@vX") is None


def test_evaluation_metrics_add_up_across_partitions(fleet_slice: list[dict[str, Any]]
                                                     ) -> None:
    cfg = pipeline_config(Settings())
    states = {}
    for m in fleet_slice:
        state = states.setdefault(m["vm_id"], new_state(cfg))
        process_event(state, MetricEvent.from_dict(m), cfg)
    parts = [evaluate([states["vm-001"], states["vm-002"]]),
             evaluate([states["vm-003"], states["vm-004"]])]
    total = summarize(parts)
    assert total["vms"] == 4 and total["samples_learned"] == len(fleet_slice)
    assert total["incidents_opened_total"] == sum(s.incidents_opened_total
                                                  for s in states.values())
    err = sum(s.forecast_error_sums["cpu_pct"][0] for s in states.values())
    actual = sum(s.forecast_error_sums["cpu_pct"][1] for s in states.values())
    assert total["forecast_wape:cpu_pct"] == pytest.approx(err / actual)
    assert 0 < total["forecast_wape:cpu_pct"] < 1


@pytest.mark.parametrize("partitions", [1, 2, 8, 12])
def test_partition_for_is_kafkas_default_partitioner(partitions: int) -> None:
    default = DefaultPartitioner()
    for i in range(200):
        key = f"vm-{i:04d}".encode()
        assert partition_for(key, partitions) == default(key, list(range(partitions)),
                                                        list(range(partitions)))


def test_idle_vms_are_forgotten_by_the_processor(fleet_slice: list[dict[str, Any]]) -> None:
    import orjson

    processor = MetricsProcessor(pipeline_config(Settings()), state_codec(b"k"),
                                 load_state=lambda key: None, metrics=WorkerMetrics(None),
                                 idle_expiry_s=3600.0)
    batch = [Inbound(m["vm_id"].encode(), orjson.dumps(m), "vm.metrics", 0, i)
             for i, m in enumerate(m for m in fleet_slice[:40])]
    result = processor.process(batch, now=fleet_slice[40]["timestamp"])
    held = set(result.states)
    assert len(held) == 4
    t0 = fleet_slice[40]["timestamp"]
    assert processor.expire(held, t0 + 1800.0) == []
    late = [Inbound(b"vm-001", orjson.dumps({**fleet_slice[0], "vm_id": "vm-001",
                                             "timestamp": t0}), "vm.metrics", 0, 99)]
    processor.process(late, now=t0 + 3000.0)
    gone = processor.expire(held, t0 + 4000.0)
    assert gone == sorted(held - {b"vm-001"})
    assert set(processor.cache) == {b"vm-001"}
    assert processor.metrics.vms_expired._value.get() == 3


@pytest.mark.parametrize(("argv", "message"), [
    (["models", "rollback"], "the following arguments are required: VERSION"),
    (["models", "rollback", "0"], "versions start at 1"),
    (["models", "show", "three"], "expected a version number"),
    (["models", "prune"], "invalid choice: 'prune'"),
])
def test_bad_models_arguments_give_one_line(argv: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
