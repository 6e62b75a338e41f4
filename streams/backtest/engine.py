"""Run the pipeline over files, offline: the agents' own :func:`~agents.pipeline.process_event`
with the worker's settings, and no broker.

* A NAB-format series (:func:`run_series`) is one VM with one metric (see
  :mod:`streams.backtest.sources`): anomaly detection, incidents and forecasts, as the service
  runs them; no scaling advice (it needs cpu and memory).
* A Bitbrains fleet (:func:`run_fleet`) is replayed as the stream would carry it: every VM's
  samples merged in time order, each validated by the worker's own decoder
  (:func:`schemas.validate.decode_metric`; refused rows are counted by reason), then learned
  with every learner on in batches of :data:`BATCH_EVENTS`, through the worker's own step
  (:func:`agents.stepper.step_events`: the batch's detectors together), hosts kept from the
  VMs' host reports for placement and applied after each batch, as the worker does.

What comes out (:class:`SeriesResult`, one per series or VM) is what an operator would have
seen: the incidents (opened, escalated, resolved), the forecasts scored against the samples
that came later (:class:`ForecastTally`, per metric and horizon), the recommendations and the
allocation they would have given the VM. Recommendations are not fed back into the trace (it
is a record): the allocation is the latest recommended target from the sample after it on, the
recorded provisioning before the first one.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import orjson

from agents.anomaly.pool import DetectorPool
from agents.forecasting.fleet import ForecasterPool
from agents.pipeline import Outputs, PipelineConfig, VMState, new_state, process_event
from agents.scaling.placement import HostState, apply_report
from agents.stepper import step_events
from schemas.records import MetricEvent
from schemas.validate import Rejected, decode_metric
from streams.backtest.nab_scoring import FloatArray
from streams.backtest.sources import Fleet, SeriesFile, read_series, window_rows
from streams.traces import read_vm, vm_identity

#: Called with the number of rows done since the last call.
ProgressFn = Callable[[int], None]
SERIES_HOST = "-"
_PROGRESS_EVERY = 2000
#: Samples of a fleet stepped together, as the worker takes them (NOVACRON_BATCH_MAX_EVENTS).
BATCH_EVENTS = 500
_SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


@dataclass
class Incident:
    """One incident as its alerts told it."""

    incident_id: str
    anomaly_class: str
    severity: str  # the highest it reached
    opened_at: float
    open_row: int
    peak_score: float
    resolved_at: float | None = None


@dataclass
class ForecastTally:
    """Sums behind forecast accuracy for one (metric, horizon).

    >>> t = ForecastTally()
    >>> t.add(forecast=9.0, actual=10.0, lower_90=8.0, upper_90=12.0)
    >>> t.add(forecast=14.0, actual=10.0, lower_90=12.0, upper_90=16.0)
    >>> t.wape, t.coverage_90
    (0.25, 0.5)
    """

    n: int = 0
    abs_error: float = 0.0
    abs_actual: float = 0.0
    inside_90: int = 0
    width_90: float = 0.0

    def add(self, forecast: float, actual: float, lower_90: float, upper_90: float) -> None:
        self.n += 1
        self.abs_error += abs(forecast - actual)
        self.abs_actual += abs(actual)
        self.inside_90 += lower_90 <= actual <= upper_90
        self.width_90 += upper_90 - lower_90

    def merge(self, other: ForecastTally) -> None:
        self.n += other.n
        self.abs_error += other.abs_error
        self.abs_actual += other.abs_actual
        self.inside_90 += other.inside_90
        self.width_90 += other.width_90

    @property
    def wape(self) -> float:
        """Weighted absolute percentage error: sum |error| / sum |actual|."""
        return self.abs_error / self.abs_actual if self.abs_actual else math.nan

    @property
    def coverage_90(self) -> float:
        """Share of actuals inside the 90 % interval (0.9 when the interval is calibrated)."""
        return self.inside_90 / self.n if self.n else math.nan


@dataclass
class SeriesResult:
    """Everything a report needs of one series or VM."""

    name: str
    key: str  # the label key of a series, the vm_id of a VM
    kind: str  # "series" or "vm"
    metric: str  # the learned metric of a series; "cpu_pct" (the plotted one) for a VM
    source: str
    t: FloatArray
    #: series: {metric: values}; vm: cpu_pct, memory_used_bytes, cpu_cores_used,
    #: provisioned_cores, provisioned_bytes, allocated_cores, allocated_bytes
    values: dict[str, FloatArray]
    incidents: list[Incident]
    #: the shortest-horizon forecasts of ``metric``: at, value, lower_90, upper_90
    forecast: dict[str, FloatArray]
    #: metric -> horizon (s) -> tally
    accuracy: dict[str, dict[float, ForecastTally]]
    rejected: Counter[str] = field(default_factory=Counter)
    late: int = 0
    drifts: int = 0
    windows: list[tuple[int, int]] = field(default_factory=list)
    labelled: bool = False
    recommendations: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return len(self.t)


class _Collector:
    """Gathers one VM's outputs as the samples go by."""

    def __init__(self, name: str, key: str, kind: str, metric: str, source: str,
                 fields: tuple[str, ...]) -> None:
        self.name, self.key, self.kind, self.metric, self.source = name, key, kind, metric, source
        self.t: list[float] = []
        self.cols: dict[str, list[float]] = {f: [] for f in fields}
        self.incidents: dict[str, Incident] = {}
        self.forecast: dict[str, list[float]] = {k: [] for k in ("at", "value", "lower_90",
                                                                 "upper_90")}
        self.accuracy: dict[str, dict[float, ForecastTally]] = {}
        self.pending: dict[str, list[tuple[float, float, float, float, float, float]]] = {}
        self.recommendations: list[dict[str, object]] = []
        self.drifts = 0

    def observe(self, ts: float, values: dict[str, float], out: Outputs) -> None:
        row = len(self.t)
        self.t.append(ts)
        for f, col in self.cols.items():
            col.append(values[f])
        self._score_forecasts(ts, values)
        for a in out.alerts:
            inc = self.incidents.get(a.incident_id)
            if inc is None:
                inc = self.incidents[a.incident_id] = Incident(
                    a.incident_id, a.anomaly_class, a.severity, a.started_at, row, a.score)
            if a.status == "resolved":
                inc.resolved_at = a.timestamp
            else:
                if _SEVERITY_RANK[a.severity] > _SEVERITY_RANK[inc.severity]:
                    inc.severity = a.severity
                inc.peak_score = max(inc.peak_score, a.score)
        for fc in out.forecasts:
            tol = fc.step_s / 2.0
            queue = self.pending.setdefault(fc.metric, [])
            for h in fc.horizons:
                heapq.heappush(queue, (h.at, h.horizon_s, h.value, h.lower_90, h.upper_90, tol))
            if fc.metric == self.metric and fc.horizons:
                first = fc.horizons[0]
                for k, v in (("at", first.at), ("value", first.value),
                             ("lower_90", first.lower_90), ("upper_90", first.upper_90)):
                    self.forecast[k].append(v)
        self.drifts += len(out.drifts)
        for r in out.recommendations:
            self.recommendations.append({
                "timestamp": r.timestamp, "action": r.action, "target_vcpus": r.target_vcpus,
                "target_memory_bytes": r.target_memory_bytes, "target_host": r.target_host,
                "confidence": r.confidence, "reasons": list(r.reasons)})

    def _score_forecasts(self, ts: float, values: dict[str, float]) -> None:
        for metric, queue in self.pending.items():
            actual = values.get(metric)
            while queue and queue[0][0] - queue[0][5] <= ts:
                at, horizon, value, lo, hi, tol = heapq.heappop(queue)
                if actual is not None and ts <= at + tol:
                    self.accuracy.setdefault(metric, {}).setdefault(horizon, ForecastTally()).add(
                        value, actual, lo, hi)

    def result(self, rejected: Counter[str], late: int, seconds: float) -> SeriesResult:
        return SeriesResult(
            name=self.name, key=self.key, kind=self.kind, metric=self.metric,
            source=self.source, t=np.asarray(self.t),
            values={f: np.asarray(c) for f, c in self.cols.items()},
            incidents=list(self.incidents.values()),
            forecast={k: np.asarray(v) for k, v in self.forecast.items()},
            accuracy=self.accuracy, rejected=rejected, late=late, drifts=self.drifts,
            recommendations=self.recommendations, seconds=seconds)


def _blank_event(vm_id: str, ts: float) -> MetricEvent:
    return MetricEvent(vm_id, SERIES_HOST, ts, 0.0, 0.0, 0.0, 1, 0.0, 0.0, 0.0, 0.0)


def run_series(series: SeriesFile, cfg: PipelineConfig, limit: int | None = None,
               progress: ProgressFn | None = None) -> SeriesResult:
    """One NAB-format series through the pipeline, as one VM with one metric."""
    started = time.perf_counter()
    data = read_series(series.path, limit)
    cfg = replace(cfg, metrics=(series.metric,))
    state = new_state(cfg)
    col = _Collector(series.name, series.key, "series", series.metric, str(series.path),
                     (series.metric,))
    done = 0
    for ts, v in zip(data.timestamps.tolist(), data.values.tolist(), strict=True):
        values = {series.metric: v}
        out = process_event(state, _blank_event(series.name, ts), cfg, values=values)
        col.observe(ts, values, out)
        done += 1
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(_PROGRESS_EVERY)
    if progress is not None:
        progress(done % _PROGRESS_EVERY)
    result = col.result(data.rejected, state.features.late_events_total,
                        time.perf_counter() - started)
    result.windows = window_rows(result.t, series.windows)
    result.labelled = series.labelled
    return result


VM_FIELDS = ("cpu_pct", "memory_used_bytes", "cpu_cores_used", "provisioned_cores",
             "provisioned_bytes", "allocated_cores", "allocated_bytes")


@dataclass
class FleetSettings:
    """What the fleet replay needs beyond the pipeline: the worker's host settings."""

    host_cpu_cores: float
    host_memory_bytes: float
    host_report_ttl_s: float
    max_message_bytes: int = 65536


def run_fleet(fleet: Fleet, cfg: PipelineConfig, hosts_cfg: FleetSettings,
              limit: int | None = None, progress: ProgressFn | None = None
              ) -> tuple[list[SeriesResult], Counter[str]]:
    """A Bitbrains fleet through the pipeline, every VM's samples merged in time order.

    Returns a result per VM and the rows the worker's decoder refused, by reason."""
    started = time.perf_counter()
    rejected: dict[str, Counter[str]] = {}
    streams = []
    for vm, files in fleet.files.items():
        counter: Counter[str] = Counter()
        streams.append(read_vm(files, vm, limit, unparseable=counter))
        rejected[vm_identity(vm)[0]] = counter
    merged = heapq.merge(*streams, key=lambda m: float(m["timestamp"]))
    states: dict[str, VMState] = {}
    cols: dict[str, _Collector] = {}
    allocated: dict[str, tuple[float, float]] = {}
    hosts: dict[str, HostState] = {}
    refused: Counter[str] = Counter()
    pool = DetectorPool(cfg.metrics)
    forecasters = ForecasterPool(cfg.forecast_horizons_s)
    done = 0
    batch: list[tuple[VMState, MetricEvent]] = []

    def step() -> None:
        # The worker's step: a batch's VMs' detectors together; host reports applied after
        # the batch, as the worker's host directory is (placement reads it as of before).
        outs = step_events(batch, cfg, pool, hosts=hosts, forecasters=forecasters)
        for (_, ev), out in zip(batch, outs, strict=True):
            for report in out.host_reports:
                hosts[report.host_id] = apply_report(
                    hosts.get(report.host_id), report, cpu_cores=hosts_cfg.host_cpu_cores,
                    memory_bytes=hosts_cfg.host_memory_bytes, ttl_s=hosts_cfg.host_report_ttl_s)
            provisioned = (float(ev.vcpus), ev.memory_total_bytes)
            cores, n_bytes = allocated.get(ev.vm_id, provisioned)
            cols[ev.vm_id].observe(ev.timestamp, {
                **ev.metrics(), "cpu_cores_used": ev.cpu_pct * ev.vcpus / 100.0,
                "provisioned_cores": provisioned[0], "provisioned_bytes": provisioned[1],
                "allocated_cores": cores, "allocated_bytes": n_bytes}, out)
            for r in out.recommendations:  # in effect from the VM's next sample
                allocated[ev.vm_id] = (float(r.target_vcpus), r.target_memory_bytes)
        batch.clear()

    for msg in merged:
        done += 1
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(_PROGRESS_EVERY)
        ev = decode_metric(orjson.dumps(msg), now=math.inf, max_bytes=hosts_cfg.max_message_bytes,
                           max_future_skew_s=math.inf)
        if isinstance(ev, Rejected):
            refused[ev.reason] += 1
            continue
        state = states.get(ev.vm_id)
        if state is None:
            state = states[ev.vm_id] = new_state(cfg)
            cols[ev.vm_id] = _Collector(ev.vm_id, ev.vm_id, "vm", "cpu_pct",
                                        str(fleet.root), VM_FIELDS)
        batch.append((state, ev))
        if len(batch) == BATCH_EVENTS:
            step()
    step()
    if progress is not None:
        progress(done % _PROGRESS_EVERY)
    seconds = time.perf_counter() - started
    results = [col.result(rejected.get(vm_id, Counter()),
                          states[vm_id].features.late_events_total,
                          seconds * len(col.t) / max(done, 1))
               for vm_id, col in cols.items()]
    return results, refused
