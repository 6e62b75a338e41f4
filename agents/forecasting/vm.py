"""All of one VM's forecasts: a :class:`SeriesForecaster` per metric.

>>> from schemas.records import MetricEvent
>>> fc = VMForecaster(horizons_s=(300.0, 900.0))
>>> for i in range(3):
...     ev = MetricEvent("vm-1", "h-1", 300.0 * i, 20.0, 1e9, 4e9, 2, 0, 0, 1e5, 2e5)
...     drifted = fc.learn_one(ev)
>>> out = fc.forecasts("vm-1", "h-1", 600.0, step_s=300.0)
>>> [(f.metric, [h.horizon_s for h in f.horizons]) for f in out][:2]
[('cpu_pct', [300.0, 900.0]), ('memory_used_bytes', [300.0, 900.0])]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agents.forecasting.series import SeriesForecaster
from schemas.records import METRIC_FIELDS, Forecast, HorizonForecast, MetricEvent

FORECASTER_NAME = "selected"


class VMForecaster:
    """One forecaster per metric (default: :data:`schemas.records.METRIC_FIELDS`)."""

    def __init__(self, horizons_s: Sequence[float] = (300.0, 900.0, 3600.0),
                 metrics: tuple[str, ...] = METRIC_FIELDS) -> None:
        self.horizons_s = tuple(float(h) for h in horizons_s)
        self.series = {m: SeriesForecaster(self.horizons_s) for m in metrics}

    def learn_one(self, event: MetricEvent, values: Mapping[str, float] | None = None
                  ) -> list[str]:
        """Learn a sample (its ``values``, default: read from ``event``); returns the metrics
        whose errors just drifted."""
        drifted = []
        if values is None:
            values = event.metrics()
        for m, fc in self.series.items():
            fc.learn_one(event.timestamp, values[m])
            if fc.drift_detected:
                drifted.append(m)
        return drifted

    def forecasts(self, vm_id: str, host_id: str, timestamp: float, step_s: float
                  ) -> list[Forecast]:
        """The VM's forecast records as of ``timestamp``, one per metric."""
        out = []
        for m, fc in self.series.items():
            horizons = [
                HorizonForecast(horizon_s=h, at=timestamp + h, value=point, lower_80=band[0],
                                upper_80=band[1], lower_90=band[2], upper_90=band[3])
                for h, (point, band) in zip(self.horizons_s, fc.forecast_at(timestamp),
                                            strict=True)
            ]
            model = f"{FORECASTER_NAME}:" + ",".join(fc.chosen_name(i)
                                                     for i in range(len(self.horizons_s)))
            out.append(Forecast(vm_id=vm_id, host_id=host_id, timestamp=timestamp, metric=m,
                                step_s=step_s, model=model, horizons=horizons))
        return out
