"""Typed records for every topic, one per JSON Schema file in this folder.

Records are frozen dataclasses serialized with orjson (``to_json``). Topics carry raw bytes at
the Faust level so that the service, not Faust, decodes input: a message that fails decoding
must reach the dead-letter topic with its original bytes instead of being skipped.

>>> verdict = Feedback(incident_id="inc-1", verdict="confirmed", timestamp=1.0)
>>> Feedback.from_dict(orjson.loads(to_json(verdict))) == verdict
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson

METRIC_FIELDS: tuple[str, ...] = (
    "cpu_pct", "memory_used_bytes", "disk_read_bytes_per_s", "disk_write_bytes_per_s",
    "net_rx_bytes_per_s", "net_tx_bytes_per_s",
)
"""The six per-VM metrics the features, detectors and forecasters work on."""

AnomalyClass = Literal[
    "cpu_spike", "memory_leak", "io_bottleneck", "network_saturation", "flatline", "unknown"]
Severity = Literal["low", "medium", "high", "critical"]
Action = Literal["scale_up", "scale_down", "migrate", "none"]
Verdict = Literal["false_positive", "confirmed"]

R = TypeVar("R")


def to_json(record: Any) -> bytes:
    """Serialize a record (or any dataclass) to compact JSON bytes."""
    return orjson.dumps(record)


def _from_dict(cls: type[R], data: dict[str, Any]) -> R:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class MetricEvent:
    """One sample of one VM (topic ``vm.metrics``, schema ``vm.metrics.v1``)."""

    vm_id: str
    host_id: str
    timestamp: float  # Unix epoch seconds
    cpu_pct: float
    memory_used_bytes: float
    memory_total_bytes: float
    vcpus: int
    disk_read_bytes_per_s: float
    disk_write_bytes_per_s: float
    net_rx_bytes_per_s: float
    net_tx_bytes_per_s: float
    anti_affinity_group: str | None = None

    def metrics(self) -> dict[str, float]:
        """The six metrics as a flat dict (see :data:`METRIC_FIELDS`)."""
        return {name: float(getattr(self, name)) for name in METRIC_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricEvent:
        return _from_dict(cls, data)


@dataclass(frozen=True, slots=True)
class FeatureContribution:
    name: str
    value: float
    baseline: float
    zscore: float


@dataclass(frozen=True, slots=True)
class Alert:
    """An incident update (topic ``vm.alerts``)."""

    incident_id: str
    vm_id: str
    host_id: str
    timestamp: float
    status: Literal["open", "update", "resolved"]
    anomaly_class: AnomalyClass
    severity: Severity
    confidence: float
    score: float
    threshold: float
    started_at: float
    features: list[FeatureContribution] = field(default_factory=list)
    detector: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        data = dict(data)
        data["features"] = [_from_dict(FeatureContribution, f) for f in data.get("features", [])]
        return _from_dict(cls, data)


@dataclass(frozen=True, slots=True)
class HorizonForecast:
    horizon_s: float
    at: float
    value: float
    lower_80: float
    upper_80: float
    lower_90: float
    upper_90: float


@dataclass(frozen=True, slots=True)
class Forecast:
    """Forecasts of one metric of one VM (topic ``vm.forecasts``)."""

    vm_id: str
    host_id: str
    timestamp: float
    metric: str
    step_s: float
    model: str
    horizons: list[HorizonForecast]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Forecast:
        data = dict(data)
        data["horizons"] = [_from_dict(HorizonForecast, h) for h in data["horizons"]]
        return _from_dict(cls, data)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A scaling or placement recommendation (topic ``vm.recommendations``)."""

    recommendation_id: str
    vm_id: str
    host_id: str
    timestamp: float
    action: Action
    confidence: float
    reasons: list[str]
    current_vcpus: int
    target_vcpus: int
    current_memory_bytes: float
    target_memory_bytes: float
    valid_until: float
    target_host: str | None = None
    #: the VM's workload pattern (agents.scaling.patterns)
    pattern: str = "unknown"
    #: the cpu target in fractional cores (target_vcpus is it rounded up)
    target_cpu_cores: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recommendation:
        return _from_dict(cls, data)


@dataclass(frozen=True, slots=True)
class HostReport:
    """A VM telling its host what it holds and uses (internal topic ``vm.host-usage``, keyed
    by host_id). ``gone``: the VM left this host."""

    host_id: str
    vm_id: str
    timestamp: float
    vcpus: float
    memory_bytes: float
    cpu_cores_used: float
    memory_used_bytes: float
    anti_affinity_group: str | None = None
    gone: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostReport:
        return _from_dict(cls, data)


@dataclass(frozen=True, slots=True)
class DriftEvent:
    """A forecaster noticed its errors change regime (topic ``vm.drift``)."""

    vm_id: str
    host_id: str
    timestamp: float
    metric: str
    detector: str
    action: str
    model_before: str
    model_after: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftEvent:
        return _from_dict(cls, data)


@dataclass(frozen=True, slots=True)
class Feedback:
    """An operator's verdict on an incident (topic ``vm.feedback``)."""

    incident_id: str
    verdict: Verdict
    timestamp: float
    note: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feedback:
        return _from_dict(cls, data)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected input message (topic ``vm.deadletter``)."""

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: str | None
    payload_b64: str
    payload_size_bytes: int
    received_at: float

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeadLetter:
        return _from_dict(cls, data)
