"""Versioned model checkpoints: the records of the model catalog, free of Kafka.

A checkpoint (a *version*) is a fleet-wide snapshot of everything the workers learned per VM
(feature windows, anomaly detector, forecasters, scaling rule, operator verdicts), taken by
every worker for the partitions it owns. Three topics carry it:

* ``vm.models`` (one partition, compacted, JSON): the catalog. ``v00000003`` describes
  version 3 (kind, parameters, created time); ``v00000003/p1`` is partition 1's report
  (VMs, evaluation metrics); ``rollback-<id>`` records a rollback request and
  ``rollback-<id>/p1`` its completion on partition 1.
* ``vm.model-commands`` (co-partitioned with ``vm.metrics``): a ``checkpoint`` or
  ``rollback`` command, one per partition, so each is handled by the worker owning it.
* ``vm.model-snapshots`` (co-partitioned, compacted): each VM's signed state (the bytes
  of the ``vm-state`` table, HMAC-verified before they are loaded) under
  ``<vm_id>@v00000003``.

>>> cat = Catalog.from_records([
...     (b"v00000001", ModelVersion(1, "vm-models", {}, 10.0).to_json()),
...     (b"v00000001/p0", PartitionReport(1, 0, 2, {"samples_learned": 50}, 11.0).to_json()),
... ])
>>> cat.next_version(), cat.versions[1].complete(partitions=1)
(2, True)
>>> snapshot_key("vm-7", 3), parse_snapshot_key(b"vm-7@v00000003")
(b'vm-7@v00000003', ('vm-7', 3))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

#: what a version holds: every VM's learned state (agents.pipeline.VMState)
MODEL_KIND = "vm-models"


def version_key(version: int) -> bytes:
    return f"v{version:08d}".encode()


def snapshot_key(vm_id: str, version: int) -> bytes:
    """The ``vm.model-snapshots`` key of ``vm_id``'s state in ``version``."""
    return f"{vm_id}@v{version:08d}".encode()


def parse_snapshot_key(key: bytes) -> tuple[str, int] | None:
    """(vm_id, version) of a ``vm.model-snapshots`` key, or None if it is not one."""
    vm_id, sep, rest = key.decode(errors="replace").rpartition("@v")
    if not sep or not vm_id or not rest.isdigit():
        return None
    return vm_id, int(rest)


@dataclass(frozen=True)
class ModelVersion:
    """One checkpoint: what was learned (kind), with which parameters, and when."""

    version: int
    kind: str
    parameters: dict[str, Any]
    created_at: float
    #: who asked for it: "cli" or "timer"
    source: str = "cli"

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> ModelVersion:
        d = orjson.loads(raw)
        return cls(version=int(d["version"]), kind=str(d["kind"]),
                   parameters=dict(d["parameters"]), created_at=float(d["created_at"]),
                   source=str(d.get("source", "cli")))


@dataclass(frozen=True)
class PartitionReport:
    """A worker's report on one partition of one checkpoint."""

    version: int
    partition: int
    vms: int
    metrics: dict[str, float]
    written_at: float

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> PartitionReport:
        d = orjson.loads(raw)
        return cls(version=int(d["version"]), partition=int(d["partition"]), vms=int(d["vms"]),
                   metrics={k: math.nan if v is None else float(v)
                            for k, v in d["metrics"].items()},
                   written_at=float(d["written_at"]))


@dataclass(frozen=True)
class Command:
    """A ``vm.model-commands`` record: checkpoint or roll back the receiving partition."""

    command: str  # "checkpoint" | "rollback"
    version: int
    request_id: str
    requested_at: float
    #: checkpoints kept: a checkpoint deletes the snapshots of version - keep
    keep: int = 24

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> Command:
        d = orjson.loads(raw)
        if d.get("command") not in ("checkpoint", "rollback"):
            raise ValueError(f"unknown model command {d.get('command')!r}")
        return cls(command=str(d["command"]), version=int(d["version"]),
                   request_id=str(d["request_id"]), requested_at=float(d["requested_at"]),
                   keep=int(d.get("keep", 24)))


@dataclass(frozen=True)
class RollbackReport:
    """A worker's report on one partition of a rollback."""

    request_id: str
    version: int
    partition: int
    restored: int
    refused: int
    written_at: float

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> RollbackReport:
        d = orjson.loads(raw)
        return cls(request_id=str(d["request_id"]), version=int(d["version"]),
                   partition=int(d["partition"]), restored=int(d["restored"]),
                   refused=int(d["refused"]), written_at=float(d["written_at"]))


@dataclass
class VersionEntry:
    """A version as the catalog knows it: its description and the partitions' reports."""

    model: ModelVersion
    reports: dict[int, PartitionReport] = field(default_factory=dict)

    def complete(self, partitions: int) -> bool:
        return all(p in self.reports for p in range(partitions))

    @property
    def vms(self) -> int:
        return sum(r.vms for r in self.reports.values())

    def metrics(self) -> dict[str, float]:
        """The partitions' metrics added up, with the ratios computed from the sums."""
        return summarize(r.metrics for r in self.reports.values())


@dataclass
class Catalog:
    """Every version, and every rollback, read from ``vm.models``."""

    versions: dict[int, VersionEntry] = field(default_factory=dict)
    #: request_id -> (version, requested_at)
    rollbacks: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: request_id -> partition -> report
    rollback_reports: dict[str, dict[int, RollbackReport]] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: Iterable[tuple[bytes, bytes | None]]) -> Catalog:
        """The catalog from ``vm.models`` records in offset order (tombstones drop keys)."""
        latest: dict[bytes, bytes] = {}
        for key, value in records:
            if value is None:
                latest.pop(key, None)
            else:
                latest[key] = value
        cat = cls()
        reports: list[PartitionReport] = []
        for key, value in latest.items():
            name = key.decode(errors="replace")
            try:
                if name.startswith("rollback-"):
                    if "/p" in name:
                        done = RollbackReport.from_json(value)
                        cat.rollback_reports.setdefault(done.request_id, {})[
                            done.partition] = done
                    else:
                        d = orjson.loads(value)
                        cat.rollbacks[name.removeprefix("rollback-")] = (
                            int(d["version"]), float(d["requested_at"]))
                elif name.startswith("v") and "/p" in name:
                    reports.append(PartitionReport.from_json(value))
                elif name.startswith("v"):
                    model = ModelVersion.from_json(value)
                    cat.versions[model.version] = VersionEntry(model)
            except (ValueError, KeyError, TypeError):
                continue  # not a record this version understands: skip it
        for rep in reports:
            if rep.version in cat.versions:
                cat.versions[rep.version].reports[rep.partition] = rep
        return cat

    def next_version(self) -> int:
        return max(self.versions, default=0) + 1

    def last_rollback(self) -> tuple[str, int, float] | None:
        """(request_id, version, requested_at) of the newest rollback, if any."""
        if not self.rollbacks:
            return None
        rid, (version, at) = max(self.rollbacks.items(), key=lambda kv: kv[1][1])
        return rid, version, at


#: summed per partition; the ratios below are computed from the sums
_SUMS = ("vms", "samples_learned", "late_events_total", "incidents_opened_total")


def evaluate(states: Iterable[Any]) -> dict[str, float]:
    """Evaluation metrics of a set of VM states (agents.pipeline.VMState), as sums so
    partitions add up: counts, and per forecast metric the online absolute error and
    absolute actual of the shortest horizon (their ratio is the WAPE)."""
    out: dict[str, float] = dict.fromkeys(_SUMS, 0.0)
    for s in states:
        late = s.features.late_events_total
        out["vms"] += 1
        out["samples_learned"] += s.events_total - late
        out["late_events_total"] += late
        out["incidents_opened_total"] += s.incidents_opened_total
        for metric, (err, actual) in s.forecast_error_sums.items():
            out[f"forecast_abs_error_sum:{metric}"] = (
                out.get(f"forecast_abs_error_sum:{metric}", 0.0) + err)
            out[f"forecast_abs_actual_sum:{metric}"] = (
                out.get(f"forecast_abs_actual_sum:{metric}", 0.0) + actual)
    return out


def summarize(parts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Partition metrics added up, plus ``forecast_wape:<metric>`` and
    ``incidents_per_1k_samples``."""
    total: dict[str, float] = {}
    for part in parts:
        for k, v in part.items():
            total[k] = total.get(k, 0.0) + v
    for k in [k for k in total if k.startswith("forecast_abs_error_sum:")]:
        metric = k.split(":", 1)[1]
        actual = total.get(f"forecast_abs_actual_sum:{metric}", 0.0)
        total[f"forecast_wape:{metric}"] = total[k] / actual if actual > 0 else math.nan
    learned = total.get("samples_learned", 0.0)
    if learned > 0:
        total["incidents_per_1k_samples"] = 1000.0 * total.get("incidents_opened_total",
                                                               0.0) / learned
    return total
