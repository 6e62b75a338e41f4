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

from agents.detectors import DETECTOR_NAME, VMAnomalyDetector, classify
from agents.forecasters import FORECASTER_NAME, MetricForecaster
from agents.recommender import ScalingRule
from schemas.records import Alert, Forecast, HorizonForecast, MetricEvent, Recommendation
from streams.features import FeatureExtractor

FORECAST_METRICS: tuple[str, ...] = ("net_rx_bytes_per_s", "net_tx_bytes_per_s")
_RESOLVE_AFTER_NORMAL_EVENTS = 3


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline needs from the settings (see :mod:`streams.settings`)."""

    tumbling_window_s: float = 300.0
    sliding_window_s: float = 900.0
    forecast_horizons_s: tuple[float, ...] = (300.0, 900.0, 3600.0)
    forecast_interval_s: float = 300.0
    alert_quantile: float = 0.995
    warmup_events: int = 48
    scale_up_cpu_pct: float = 80.0
    scale_down_cpu_pct: float = 10.0
    scale_up_memory_pct: float = 90.0


@dataclass
class Incident:
    incident_id: str
    anomaly_class: str
    started_at: float
    severity: str
    normal_streak: int = 0
    peak_score: float = 0.0


@dataclass
class VMState:
    """Everything learned about one VM; stored, signed, in the ``vm-state`` table."""

    features: FeatureExtractor
    detector: VMAnomalyDetector
    forecasters: dict[str, MetricForecaster]
    scaling: ScalingRule
    host_id: str = ""
    events_total: int = 0
    last_forecast_at: float = -math.inf
    incident: Incident | None = None


@dataclass
class Outputs:
    alerts: list[Alert] = field(default_factory=list)
    forecasts: list[Forecast] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)


def new_state(cfg: PipelineConfig) -> VMState:
    return VMState(
        features=FeatureExtractor(cfg.tumbling_window_s, cfg.sliding_window_s),
        detector=VMAnomalyDetector(quantile=cfg.alert_quantile, warmup_events=cfg.warmup_events),
        forecasters={m: MetricForecaster() for m in FORECAST_METRICS},
        scaling=ScalingRule(scale_up_cpu_pct=cfg.scale_up_cpu_pct,
                            scale_down_cpu_pct=cfg.scale_down_cpu_pct,
                            scale_up_memory_pct=cfg.scale_up_memory_pct),
    )


def incident_id(vm_id: str, anomaly_class: str, started_at: float) -> str:
    """Deterministic: reprocessing the same events opens the same incident, not a new one."""
    return f"{vm_id}/{anomaly_class}/{int(started_at)}"


def _severity(score: float, threshold: float, breadth: int) -> str:
    margin = (score - threshold) / max(1e-9, 1.0 - threshold)
    level = int(margin > 0.25) + int(margin > 0.5) + int(breadth >= 3)
    return ("low", "medium", "high", "critical")[level]


def _detect(state: VMState, ev: MetricEvent, x: dict[str, float], out: Outputs) -> None:
    det = state.detector
    score = det.score_one(x)
    anomalous = det.is_anomalous(score)
    threshold = det.current_threshold
    inc = state.incident
    if anomalous:
        contributions = det.explain(x)
        breadth = len({c.name.split(".")[0] for c in det.explain(x, top=6) if abs(c.zscore) > 3})
        severity = _severity(score, threshold, breadth)
        if inc is None:
            cls = classify(contributions, x)
            inc = state.incident = Incident(incident_id(ev.vm_id, cls, ev.timestamp), cls,
                                            ev.timestamp, severity, peak_score=score)
            status = "open"
        else:
            inc.normal_streak = 0
            inc.peak_score = max(inc.peak_score, score)
            if severity == inc.severity:
                det.learn_one(x)
                return
            inc.severity, status = severity, "update"
        out.alerts.append(Alert(
            incident_id=inc.incident_id, vm_id=ev.vm_id, host_id=ev.host_id,
            timestamp=ev.timestamp, status=status, anomaly_class=inc.anomaly_class,  # type: ignore[arg-type]
            severity=severity, confidence=round(min(1.0, 0.5 + (score - threshold)), 3),  # type: ignore[arg-type]
            score=round(score, 4), threshold=round(threshold, 4), started_at=inc.started_at,
            features=contributions, detector=DETECTOR_NAME))
    elif inc is not None:
        inc.normal_streak += 1
        if inc.normal_streak >= _RESOLVE_AFTER_NORMAL_EVENTS:
            out.alerts.append(Alert(
                incident_id=inc.incident_id, vm_id=ev.vm_id, host_id=ev.host_id,
                timestamp=ev.timestamp, status="resolved",
                anomaly_class=inc.anomaly_class,  # type: ignore[arg-type]
                severity=inc.severity,  # type: ignore[arg-type]
                confidence=1.0, score=round(score, 4), threshold=round(threshold, 4),
                started_at=inc.started_at, features=[], detector=DETECTOR_NAME))
            state.incident = None
    det.learn_one(x)


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
    _detect(state, ev, x, out)
    _forecast(state, ev, cfg, out)
    rec = state.scaling.recommend(ev, x)
    if rec is not None:
        out.recommendations.append(rec)
    return out
