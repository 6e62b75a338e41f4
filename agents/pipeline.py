"""The per-VM processing step, shared by the Faust agent, replay and benchmarks.

:func:`process_event` takes a VM's :class:`VMState` and one validated metric event, updates
the features and every learner, and returns what to publish. It is pure and synchronous (no
Kafka, no clock), so the same code serves the stream and offline evaluation.
:func:`apply_feedback` teaches the state an operator's verdict on one of its recent incidents;
the detector's evidence is then weighed by what the VM learned from verdicts and, with less
weight, by the fleet's verdicts on the anomaly class (:mod:`agents.anomaly.feedback`).

>>> from schemas.records import MetricEvent
>>> cfg = PipelineConfig()
>>> state = new_state(cfg)
>>> for t in (0.0, 60.0):
...     ev = MetricEvent("vm-1", "h-1", t, 30.0, 1e9, 4e9, 2, 0.0, 0.0, 1e5, 2e5)
...     out = process_event(state, ev, cfg)
>>> [(f.metric, f.step_s, [h.horizon_s for h in f.horizons]) for f in out.forecasts][0]
('cpu_pct', 60.0, [300.0, 900.0, 3600.0])
>>> len(out.forecasts)
6
>>> state.events_total
2
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.anomaly.classify import classify, is_flatline
from agents.anomaly.feedback import (
    FLATLINE_KEY,
    ClassSensitivity,
    IncidentRecord,
    Key,
    RecentIncidents,
    Sensitivity,
    z_for_score,
)
from agents.anomaly.incidents import IncidentTracker, severity
from agents.anomaly.likelihood import squash
from agents.anomaly.vm import Verdict, VMDetector
from agents.forecasting.vm import VMForecaster
from agents.scaling.placement import HostState
from agents.scaling.recommender import VMRecommender
from agents.scaling.sizing import SizingConfig
from schemas.records import (
    METRIC_FIELDS,
    Alert,
    DriftEvent,
    Feedback,
    Forecast,
    HostReport,
    MetricEvent,
    Recommendation,
)
from streams.features import FeatureExtractor

DETECTOR_NAME = "novacron-ensemble-v2"


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline needs from the settings (see :mod:`streams.settings`)."""

    tumbling_window_s: float = 300.0
    sliding_window_s: float = 900.0
    forecast_horizons_s: tuple[float, ...] = (300.0, 900.0, 3600.0)
    forecast_interval_s: float = 300.0
    alert_threshold: float = 0.6
    resolve_after_events: int = 3
    sizing: SizingConfig = field(default_factory=SizingConfig)
    recommendation_valid_s: float = 900.0
    host_report_interval_s: float = 60.0
    #: the metrics learned per VM; the service learns all six. A subset (or other names, with
    #: the values given to :func:`process_event`) serves single-series backtests, e.g. NAB
    #: files: without both ``cpu_pct`` and ``memory_used_bytes`` there is no scaling advice
    #: and no host report.
    metrics: tuple[str, ...] = METRIC_FIELDS

    @property
    def scales(self) -> bool:
        """Whether the VM gets scaling advice (it needs cpu and memory)."""
        return "cpu_pct" in self.metrics and "memory_used_bytes" in self.metrics


@dataclass
class VMState:
    """Everything learned about one VM; stored, signed, in the ``vm-state`` table."""

    features: FeatureExtractor
    detector: VMDetector
    incidents: IncidentTracker
    forecasters: VMForecaster
    scaling: VMRecommender
    host_id: str = ""
    #: when the VM last reported to its host (event time), and to which host
    last_host_report_at: float = -math.inf
    reported_host: str = ""
    events_total: int = 0
    last_forecast_at: float = -math.inf
    #: what operator verdicts taught this VM (agents.anomaly.feedback)
    sensitivity: Sensitivity = field(default_factory=Sensitivity)
    #: the last incidents, so a verdict can be matched to what it is about
    recent: RecentIncidents = field(default_factory=RecentIncidents)
    #: incidents this VM opened (a model checkpoint's evaluation metrics add them up)
    incidents_opened_total: int = 0
    #: metric -> [sum |error|, sum |actual|] of the shortest-horizon forecasts (online WAPE)
    forecast_error_sums: dict[str, list[float]] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # States stored before a field existed load with that field's default.
        self.__dict__.update(state)
        for f in dataclasses.fields(self):
            if f.name in self.__dict__:
                continue
            if f.default_factory is not dataclasses.MISSING:
                setattr(self, f.name, f.default_factory())
            elif f.default is not dataclasses.MISSING:
                setattr(self, f.name, f.default)


@dataclass(frozen=True)
class Detection:
    """What the detector made of one sample, whatever the alert threshold: the score (after
    the VM's and the fleet's verdicts), whether the features show a flatline (anomalous at any
    threshold), and the class an incident opened on this sample would get."""

    score: float
    flatline: bool
    anomaly_class: str


@dataclass
class Outputs:
    #: the sample's detection (None for a late or replayed sample)
    detection: Detection | None = None
    alerts: list[Alert] = field(default_factory=list)
    forecasts: list[Forecast] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    drifts: list[DriftEvent] = field(default_factory=list)
    host_reports: list[HostReport] = field(default_factory=list)
    #: metric -> (|error|, |actual|) of the shortest-horizon forecasts scored on this sample
    forecast_errors: dict[str, tuple[float, float]] = field(default_factory=dict)


def new_state(cfg: PipelineConfig) -> VMState:
    return VMState(
        features=FeatureExtractor(cfg.tumbling_window_s, cfg.sliding_window_s),
        detector=VMDetector(metrics=cfg.metrics),
        incidents=IncidentTracker(resolve_after=cfg.resolve_after_events),
        forecasters=VMForecaster(cfg.forecast_horizons_s, metrics=cfg.metrics),
        scaling=VMRecommender(cfg.sizing, valid_for_s=cfg.recommendation_valid_s),
    )


def _weighed(raw: Verdict, evidence: Mapping[Key, float], factor: float,
             det: VMDetector, values: Mapping[str, float]) -> Verdict:
    """``raw`` with its evidence as the VM's and the fleet's verdicts weigh it."""
    scored = {k: z / factor for k, z in evidence.items() if k != FLATLINE_KEY}
    if not scored or raw.score <= 0.0:  # nothing to score yet (warm-up)
        return dataclasses.replace(raw, score=0.0, evidence=scored)
    (metric, kind), best = max(scored.items(), key=lambda kv: kv[1])
    raw_best = max(raw.evidence, key=raw.evidence.__getitem__)
    direction = raw.direction
    if (metric, kind) == raw_best:
        metric = raw.metric
    else:
        explained = det.explain(values, top=len(values))
        if metric == "*":  # the joint shape: name the metric furthest from its baseline
            metric = explained[0].name if explained else raw.metric
        z = next((c.zscore for c in explained if c.name == metric), 0.0)
        direction = math.copysign(1.0, z) if z else 0.0
    return Verdict(score=squash(best), metric=metric, kind=kind, direction=direction,
                   evidence=scored)


def _detect(state: VMState, ev: MetricEvent, values: dict[str, float], x: Mapping[str, float],
            cfg: PipelineConfig, out: Outputs, fleet: ClassSensitivity | None = None,
            raw: Verdict | None = None) -> None:
    det = state.detector
    if raw is None:
        raw = det.score_one(ev.timestamp, values)
        det.learn_one(ev.timestamp, values, raw)
    threshold = cfg.alert_threshold
    z_thr = z_for_score(threshold)
    flat = is_flatline(x) and det.ready
    evidence: dict[Key, float] = dict(raw.evidence)
    if flat:  # a flatline is judged (and remembered) like evidence at twice the threshold
        evidence[FLATLINE_KEY] = 2.0 * z_thr
    tracker = state.incidents
    # The VM's own verdicts weigh its evidence; then the fleet's verdicts on the class the
    # sample would open (or continues), with less weight (a factor within 1 +- weight).
    weighed = state.sensitivity.adjust(evidence, ev.timestamp, z_thr)
    factor = 1.0
    if fleet is not None and fleet.counts and raw.score > 0.0:
        cls = ""
        if tracker.open is not None:
            cls = tracker.open.anomaly_class
        elif squash(max(weighed.values(), default=0.0) / fleet.min_factor) >= threshold:
            cls = classify(_weighed(raw, weighed, 1.0, det, values), x)
        factor = fleet.factor(cls) if cls else 1.0
    verdict = raw
    if weighed is not evidence or factor != 1.0:
        verdict = _weighed(raw, weighed, factor, det, values)
        flat = flat and weighed[FLATLINE_KEY] / factor >= z_thr
    anomalous = verdict.score >= threshold or flat
    margin = max(0.0, (verdict.score - threshold) / (1.0 - threshold))
    level = ""
    if anomalous:
        breadth = len({m for (m, _), z in verdict.evidence.items()
                       if m != "*" and squash(z) >= threshold})
        steps = tracker.open.steps + 1 if tracker.open is not None else 1
        level = severity(margin, breadth, steps)
    named = classify(verdict, x) if verdict.score > 0.0 or flat else "unknown"
    out.detection = Detection(verdict.score, flat, named)
    cls = named if anomalous and tracker.open is None else ""
    change = tracker.observe(ev.vm_id, ev.timestamp, anomalous, cls, level, verdict.score)
    if anomalous and tracker.open is not None:
        state.recent.note(tracker.open.incident_id, tracker.open.anomaly_class, ev.timestamp,
                          evidence)
    if change is None:
        return
    inc = change.incident
    resolved = change.status == "resolved"
    if change.status == "open":
        state.incidents_opened_total += 1
    out.alerts.append(Alert(
        incident_id=inc.incident_id, vm_id=ev.vm_id, host_id=ev.host_id,
        timestamp=ev.timestamp, status=change.status,  # type: ignore[arg-type]
        anomaly_class=inc.anomaly_class,  # type: ignore[arg-type]
        severity=inc.severity,  # type: ignore[arg-type]
        confidence=1.0 if resolved else round(0.5 + 0.5 * min(margin, 1.0), 3),
        score=round(verdict.score, 4), threshold=threshold, started_at=inc.started_at,
        features=[] if resolved else det.explain(values, focus=verdict.metric),
        detector=DETECTOR_NAME))


def forecasts_due(state: VMState, ev: MetricEvent, cfg: PipelineConfig) -> bool:
    """Whether the sample publishes the VM's forecast records."""
    return (state.features.step_s > 0
            and ev.timestamp - state.last_forecast_at >= cfg.forecast_interval_s)


def _forecast(state: VMState, ev: MetricEvent, values: dict[str, float], cfg: PipelineConfig,
              out: Outputs, drifted: list[str] | None = None) -> None:
    fc = state.forecasters
    if drifted is None:  # not learned with a batch of VMs (agents.stepper)
        drifted = fc.learn_one(ev, values)
    for metric in drifted:
        series = fc.series[metric]
        out.drifts.append(DriftEvent(
            vm_id=ev.vm_id, host_id=ev.host_id, timestamp=ev.timestamp, metric=metric,
            detector="page_hinkley", action="reselect", model_before=series.model_before_drift,
            model_after=series.chosen_name(0)))
    for metric, series in fc.series.items():
        if series.scored_now is not None:
            out.forecast_errors[metric] = series.scored_now
            err, actual = series.scored_now
            if math.isfinite(err) and math.isfinite(actual):
                sums = state.forecast_error_sums.setdefault(metric, [0.0, 0.0])
                sums[0] += err
                sums[1] += actual
    if not forecasts_due(state, ev, cfg):
        return
    state.last_forecast_at = ev.timestamp
    out.forecasts.extend(fc.forecasts(ev.vm_id, ev.host_id, ev.timestamp,
                                      state.features.step_s))


def _report_to_host(state: VMState, ev: MetricEvent, cfg: PipelineConfig, out: Outputs,
                    changed: bool) -> None:
    """Tell the VM's host what it holds and uses, every ``host_report_interval_s`` (and at
    once after a recommendation); a VM that moved tells its old host it left."""
    if state.reported_host and state.reported_host != ev.host_id:
        out.host_reports.append(HostReport(
            host_id=state.reported_host, vm_id=ev.vm_id, timestamp=ev.timestamp, vcpus=0.0,
            memory_bytes=0.0, cpu_cores_used=0.0, memory_used_bytes=0.0, gone=True))
        changed = True
    if not changed and ev.timestamp - state.last_host_report_at < cfg.host_report_interval_s:
        return
    state.last_host_report_at = ev.timestamp
    state.reported_host = ev.host_id
    out.host_reports.append(HostReport(
        host_id=ev.host_id, vm_id=ev.vm_id, timestamp=ev.timestamp, vcpus=float(ev.vcpus),
        memory_bytes=ev.memory_total_bytes, cpu_cores_used=ev.cpu_pct * ev.vcpus / 100.0,
        memory_used_bytes=ev.memory_used_bytes, anti_affinity_group=ev.anti_affinity_group))


@dataclass
class Step:
    """An event between :func:`begin_event` and :func:`finish_event`: its values, in the
    order of ``cfg.metrics``, and its features."""

    ev: MetricEvent
    values: dict[str, float]
    #: the VM's feature vector (streams.features.FeatureVector: computed when first read)
    features: Mapping[str, float]


def begin_event(state: VMState, ev: MetricEvent, cfg: PipelineConfig,
                values: dict[str, float] | None = None) -> Step | None:
    """The first part of :func:`process_event`: count the event and update the features.
    None for a late or replayed sample (counted, not learned twice): it has no outputs."""
    state.host_id = ev.host_id
    state.events_total += 1
    late_before = state.features.late_events_total
    if values is None:
        values = ev.metrics()
        if len(cfg.metrics) != len(values):
            values = {m: values[m] for m in cfg.metrics}
    x = state.features.update(ev.timestamp, values)
    if state.features.late_events_total != late_before:
        return None
    return Step(ev, values, x)


def finish_event(state: VMState, step: Step, cfg: PipelineConfig,
                 fleet: ClassSensitivity | None = None,
                 hosts: Mapping[str, HostState] | None = None,
                 raw: Verdict | None = None, drifted: list[str] | None = None) -> Outputs:
    """The rest of :func:`process_event`: detection, forecasts, scaling. ``raw``: the
    detector's verdict on the sample when it was already scored and learned (a batch of
    VMs stepped together, :class:`agents.anomaly.pool.DetectorPool`); otherwise the VM's
    detector scores and learns it here. ``drifted``: likewise, the metrics whose forecast
    errors drifted when the forecasters already learned the sample
    (:class:`agents.forecasting.fleet.ForecasterPool`)."""
    out = Outputs()
    ev = step.ev
    _detect(state, ev, step.values, step.features, cfg, out, fleet, raw)
    _forecast(state, ev, step.values, cfg, out, drifted)
    if not cfg.scales:
        return out
    rec = state.scaling.recommend(ev, state.forecasters, hosts)
    if rec is not None:
        out.recommendations.append(rec)
    _report_to_host(state, ev, cfg, out, changed=rec is not None)
    return out


def process_event(state: VMState, ev: MetricEvent, cfg: PipelineConfig,
                  fleet: ClassSensitivity | None = None,
                  hosts: Mapping[str, HostState] | None = None,
                  values: dict[str, float] | None = None) -> Outputs:
    """Update ``state`` with one event and return the records to publish.

    ``fleet``: the fleet-wide verdicts per anomaly class (none: no fleet adjustment).
    ``hosts``: every known host, for placement (none: recommend without placement).
    ``values``: the values of ``cfg.metrics`` (default: read from ``ev``); a backtest of a
    single series names its metric ``value`` and gives it here.
    """
    step = begin_event(state, ev, cfg, values)
    if step is None:
        return Outputs()  # late or replayed sample: counted, not learned twice
    return finish_event(state, step, cfg, fleet, hosts)


def apply_feedback(state: VMState, feedback: Feedback, cfg: PipelineConfig
                   ) -> tuple[IncidentRecord, bool] | None:
    """Teach ``state`` an operator's verdict on one of its recent incidents.

    Returns the incident's record and whether the verdict was new (a redelivered verdict
    changes nothing), or None when the VM has no such recent incident. Bars decay in the VM's
    own clock (its newest sample), not the operator's.
    """
    record = state.recent.get(feedback.incident_id)
    if record is None:
        return None
    now = max(record.ended_at, state.features.last_ts or 0.0)
    changed = state.sensitivity.learn(record, feedback.verdict,
                                      z_for_score(cfg.alert_threshold), now)
    return record, changed


def vm_view(vm_id: str, state: VMState) -> dict[str, Any]:
    """The JSON view of ``GET /vms/{vm_id}``: latest features, forecasts, pattern, latest
    recommendation and open incident."""
    ts = state.features.last_ts
    step_s = state.features.step_s
    forecasts = (state.forecasters.forecasts(vm_id, state.host_id, ts, step_s)
                 if ts is not None and step_s > 0 else [])
    open_incident = state.incidents.open
    rec = state.scaling.last
    return {
        "vm_id": vm_id,
        "host_id": state.host_id,
        "events_total": state.events_total,
        # samples learned once each: a re-delivered sample (at-least-once) counts as late
        "samples_learned": state.events_total - state.features.late_events_total,
        "late_events_total": state.features.late_events_total,
        "last_timestamp": ts,
        "features": state.features.features(ts) if ts is not None else {},
        "forecasts": [dataclasses.asdict(f) for f in forecasts],
        "pattern": state.scaling.patterns.pattern,
        "pattern_detail": state.scaling.patterns.describe(),
        "recommendation": dataclasses.asdict(rec) if rec is not None else None,
        "open_incidents": [dataclasses.asdict(open_incident)] if open_incident else [],
    }
