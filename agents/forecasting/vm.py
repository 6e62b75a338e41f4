"""All of one VM's forecasts: a series forecaster per metric, as the rows of one fleet.

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
from typing import Any

import numpy as np

from agents.forecasting.fleet import FleetForecaster, ForecasterPool
from agents.forecasting.series import SeriesView
from schemas.records import METRIC_FIELDS, Forecast, HorizonForecast, MetricEvent

FORECASTER_NAME = "selected"


class VMForecaster:
    """One forecaster per metric (default: :data:`schemas.records.METRIC_FIELDS`), all
    learned in one call per sample: on its own, rows ``0 .. len(metrics) - 1`` of a fleet of
    its own; :meth:`attach`-ed, rows of a :class:`~agents.forecasting.fleet.ForecasterPool`
    whose fleet learns many VMs' samples at once. Its stored state (``__getstate__``) is its
    rows, whether attached or not."""

    _pool: ForecasterPool | None = None

    def __init__(self, horizons_s: Sequence[float] = (300.0, 900.0, 3600.0),
                 metrics: tuple[str, ...] = METRIC_FIELDS) -> None:
        self.horizons_s = tuple(float(h) for h in horizons_s)
        self.metrics = tuple(metrics)
        self.fleet = FleetForecaster(self.horizons_s, rows=len(self.metrics))
        self._views()

    def _views(self, rows: np.ndarray | None = None) -> None:
        self.rows = np.arange(len(self.metrics), dtype=np.int64) if rows is None else rows
        self.series = {m: SeriesView(self.fleet, r)
                       for m, r in zip(self.metrics, self.rows.tolist(), strict=True)}

    @property
    def pool(self) -> ForecasterPool | None:
        """The pool it is attached to, if any."""
        return self._pool

    def attach(self, pool: ForecasterPool) -> None:
        """Move this VM's rows into free rows of ``pool`` (same horizons)."""
        if self._pool is not None:
            raise ValueError("already attached to a pool")
        if pool.fleet.horizons_s != self.horizons_s:
            raise ValueError(f"the pool forecasts {pool.fleet.horizons_s}, this VM "
                             f"{self.horizons_s}")
        rows = pool.acquire(len(self.metrics))
        own, fleet = self.fleet, pool.fleet
        fleet.f32[rows], fleet.f64[rows], fleet.i64[rows] = own.f32, own.f64, own.i64
        self._pool, self.fleet = pool, fleet
        self._views(rows)

    def detach(self) -> None:
        """Copy this VM's rows out of its pool and free them."""
        pool = self._pool
        if pool is None:
            return
        own = FleetForecaster(self.horizons_s, rows=len(self.metrics))
        own.f32[:], own.f64[:], own.i64[:] = self._arrays()
        pool.release(self.rows)
        self._pool, self.fleet = None, own
        self._views()

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f, rows = self.fleet, self.rows
        return f.f32[rows], f.f64[rows], f.i64[rows]

    def learn_one(self, event: MetricEvent, values: Mapping[str, float] | None = None
                  ) -> list[str]:
        """Learn a sample (its ``values``, default: read from ``event``); returns the metrics
        whose errors just drifted."""
        if values is None:
            values = event.metrics()
        y = np.array([values[m] for m in self.metrics], dtype=np.float64)
        return self.learned(self.fleet.learn_many(self.rows, np.full(len(y), event.timestamp),
                                                  y))

    def learned(self, res: np.ndarray) -> list[str]:
        """Take this VM's rows of :meth:`FleetForecaster.learn_many`'s result (a batch of
        many VMs learned at once); returns the metrics whose errors just drifted."""
        drifted = []
        for (m, view), row in zip(self.series.items(), res.tolist(), strict=True):
            view.learned(row)
            if view.drift_detected:
                drifted.append(m)
        return drifted

    def forecasts(self, vm_id: str, host_id: str, timestamp: float, step_s: float
                  ) -> list[Forecast]:
        """The VM's forecast records as of ``timestamp``, one per metric."""
        out = []
        for m, view in self.series.items():
            horizons = [
                HorizonForecast(horizon_s=h, at=timestamp + h, value=point, lower_80=band[0],
                                upper_80=band[1], lower_90=band[2], upper_90=band[3])
                for h, (point, band) in zip(self.horizons_s, view.forecast_at(timestamp),
                                            strict=True)
            ]
            model = f"{FORECASTER_NAME}:" + ",".join(view.chosen_names(timestamp))
            out.append(Forecast(vm_id=vm_id, host_id=host_id, timestamp=timestamp, metric=m,
                                step_s=step_s, model=model, horizons=horizons))
        return out

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.horizons_s, self.metrics, *self._arrays())

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        horizons_s, metrics, f32, f64, i64 = state
        self.horizons_s, self.metrics = tuple(horizons_s), tuple(metrics)
        self.fleet = FleetForecaster(self.horizons_s, rows=len(self.metrics))
        self.fleet.f32[:], self.fleet.f64[:], self.fleet.i64[:] = f32, f64, i64
        self._views()
