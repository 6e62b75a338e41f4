"""The per-VM processing step, shared by the Faust agent, replay and benchmarks.

:func:`process_event` takes a VM's :class:`VMState` and one validated metric event, updates
the features and every learner, and returns what to publish. It is pure and synchronous (no
Kafka, no clock), so the same code serves the stream and offline evaluation.

>>> from schemas.records import MetricEvent
>>> cfg = PipelineConfig()
>>> state = new_state(cfg)
>>> for t in (0.0, 60.0):
...     ev = MetricEvent("vm-1", "h-1", t, 30.0, 1e9, 4e9, 2, 0.0, 0.0, 1e5, 2e5)
...     out = process_event(state, ev, cfg)
>>> [(f.metric, f.step_s, [h.horizon_s for h in f.horizons]) for f in out.forecasts][0]
('net_rx_bytes_per_s', 60.0, [300.0, 900.0, 3600.0])
>>> state.events_total
2
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agents.anomaly.classify import classify, is_flatline
from agents.anomaly.incidents import IncidentTracker, severity
from agents.anomaly.vm import VMDetector
from agents.forecasters import FORECASTER_NAME, MetricForecaster
from agents.recommender import ScalingRule
from schemas.records import Alert, Forecast, HorizonForecast, MetricEvent, Recommendation
from streams.features import FeatureExtractor

FORECAST_METRICS: tuple[str, ...] = ("net_rx_bytes_per_s", "net_tx_bytes_per_s")
DETECTOR_NAME = "novacron-evidence-v1"


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline needs from the settings (see :mod:`streams.settings`)."""

    tumbling_window_s: float = 300.0
    sliding_window_s: float = 900.0
    forecast_horizons_s: tuple[float, ...] = (300.0, 900.0, 3600.0)
    forecast_interval_s: float = 300.0
    alert_threshold: float = 0.4
    resolve_after_events: int = 3
    scale_up_cpu_pct: float = 80.0
    scale_down_cpu_pct: float = 10.0
    scale_up_memory_pct: float = 90.0


@dataclass
class VMState:
    """Everything learned about one VM; stored, signed, in the ``vm-state`` table."""

    features: FeatureExtractor
    detector: VMDetector
    incidents: IncidentTracker
    forecasters: dict[str, MetricForecaster]
    scaling: ScalingRule
    host_id: str = ""
    events_total: int = 0
    last_forecast_at: float = -math.inf


@dataclass
class Outputs:
    alerts: list[Alert] = field(default_factory=list)
    forecasts: list[Forecast] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)


def new_state(cfg: PipelineConfig) -> VMState:
    return VMState(
        features=FeatureExtractor(cfg.tumbling_window_s, cfg.sliding_window_s),
        detector=VMDetector(),
        incidents=IncidentTracker(resolve_after=cfg.resolve_after_events),
        forecasters={m: MetricForecaster() for m in FORECAST_METRICS},
        scaling=ScalingRule(scale_up_cpu_pct=cfg.scale_up_cpu_pct,
                            scale_down_cpu_pct=cfg.scale_down_cpu_pct,
                            scale_up_memory_pct=cfg.scale_up_memory_pct),
    )


def _detect(state: VMState, ev: MetricEvent, x: dict[str, float], cfg: PipelineConfig,
            out: Outputs) -> None:
    det = state.detector
    values = ev.metrics()
    verdict = det.score_one(ev.timestamp, values)
    det.learn_one(ev.timestamp, values)
    threshold = cfg.alert_threshold
    flat = is_flatline(x) and det.ready
    anomalous = verdict.score >= threshold or flat
    tracker = state.incidents
    margin = max(0.0, (verdict.score - threshold) / (1.0 - threshold))
    breadth = len({m for (m, _), z in verdict.evidence.items()
                   if m != "*" and z / (z + 10.0) >= threshold})
    steps = tracker.open.steps + 1 if tracker.open is not None else 1
    level = severity(margin, breadth, steps) if anomalous else ""
    cls = classify(verdict, x) if anomalous and tracker.open is None else ""
    change = tracker.observe(ev.vm_id, ev.timestamp, anomalous, cls, level, verdict.score)
    if change is None:
        return
    inc = change.incident
    resolved = change.status == "resolved"
    out.alerts.append(Alert(
        incident_id=inc.incident_id, vm_id=ev.vm_id, host_id=ev.host_id,
        timestamp=ev.timestamp, status=change.status,  # type: ignore[arg-type]
        anomaly_class=inc.anomaly_class,  # type: ignore[arg-type]
        severity=inc.severity,  # type: ignore[arg-type]
        confidence=1.0 if resolved else round(0.5 + 0.5 * min(margin, 1.0), 3),
        score=round(verdict.score, 4), threshold=threshold, started_at=inc.started_at,
        features=[] if resolved else det.explain(values), detector=DETECTOR_NAME))


def _forecast(state: VMState, ev: MetricEvent, cfg: PipelineConfig, out: Outputs) -> None:
    values = ev.metrics()
    for metric, fc in state.forecasters.items():
        fc.learn_one(values[metric])
    step_s = state.features.step_s
    if step_s <= 0 or ev.timestamp - state.last_forecast_at < cfg.forecast_interval_s:
        return
    state.last_forecast_at = ev.timestamp
    steps = [max(1, round(h / step_s)) for h in cfg.forecast_horizons_s]
    for metric, fc in state.forecasters.items():
        points = fc.forecast(max(steps))
        bands = fc.interval(max(steps))
        horizons = [
            HorizonForecast(horizon_s=h, at=ev.timestamp + s * step_s, value=points[s - 1],
                            lower_80=bands[s - 1][0], upper_80=bands[s - 1][1],
                            lower_90=bands[s - 1][2], upper_90=bands[s - 1][3])
            for h, s in zip(cfg.forecast_horizons_s, steps, strict=True)
        ]
        out.forecasts.append(Forecast(vm_id=ev.vm_id, host_id=ev.host_id,
                                      timestamp=ev.timestamp, metric=metric, step_s=step_s,
                                      model=FORECASTER_NAME, horizons=horizons))


def process_event(state: VMState, ev: MetricEvent, cfg: PipelineConfig) -> Outputs:
    """Update ``state`` with one event and return the records to publish."""
    out = Outputs()
    state.host_id = ev.host_id
    state.events_total += 1
    late_before = state.features.late_events_total
    x = state.features.update(ev.timestamp, ev.metrics())
    if state.features.late_events_total != late_before:
        return out  # late or replayed sample: counted, not learned twice
    _detect(state, ev, x, cfg, out)
    _forecast(state, ev, cfg, out)
    rec = state.scaling.recommend(ev, x)
    if rec is not None:
        out.recommendations.append(rec)
    return out
