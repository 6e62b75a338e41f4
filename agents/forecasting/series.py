"""One series' forecaster: candidates, online selection, conformal intervals, drift.

Every ``grid_s`` seconds a forecaster remembers what each candidate of
:mod:`agents.forecasting.candidates` forecast for every horizon; when the target time arrives
it scores them (an exponentially weighted mean absolute error per candidate and horizon) and,
per horizon, forecasts with the candidate that has erred least lately, or with their learned
combination (exponentiated-gradient weights). Prediction intervals come from online quantiles
of the chosen forecast's own residuals in units of their recent size (locally weighted
conformal: each quantile moves up when a residual lands above it and down otherwise), widened
or narrowed by adaptive conformal inference (Gibbs & Candes, 2021), so the 80 % and 90 %
intervals keep their coverage as the series' volatility changes. A Page-Hinkley detector
watches the shortest horizon's errors; on drift, the error history is cut short so selection
and intervals adapt within hours instead of days.

The state is one row of a :class:`~agents.forecasting.fleet.FleetForecaster`: a
:class:`SeriesView` reads a row of any fleet, and :class:`SeriesForecaster` owns a fleet of
one row.

>>> import math
>>> fc = SeriesForecaster(horizons_s=(300.0, 3600.0))
>>> for i in range(2000):
...     fc.learn_one(300.0 * i, 50 + 10 * math.sin(2 * math.pi * i / 288))
>>> point, (lo80, hi80, lo90, hi90) = fc.forecast_at(300.0 * 2000, [3600.0])[0]
>>> abs(point - (50 + 10 * math.sin(2 * math.pi * 2012 / 288))) < 1.0
True
>>> lo90 <= lo80 <= point <= hi80 <= hi90
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agents.forecasting.fleet import Band, FleetForecaster, bands
from agents.forecasting.layout import MODELS, QUANTILES

__all__ = ["MODELS", "QUANTILES", "Band", "SeriesForecaster", "SeriesView"]


class SeriesView:
    """Row ``row`` of ``fleet`` as one series' forecaster (reading; its owner learns).

    ``drift_detected``, ``scored_now`` and ``model_before_drift`` describe the last sample
    learned: whether the errors drifted, (|error|, |actual|) of the shortest horizon's
    forecast scored on it (None: none was due), and the model chosen before a drift.
    """

    def __init__(self, fleet: FleetForecaster, row: int) -> None:
        self.fleet = fleet
        self.row = row
        self._rows = np.array([row], dtype=np.int64)
        self.horizons_s = fleet.horizons_s
        self.drift_detected = False
        self.scored_now: tuple[float, float] | None = None
        self.model_before_drift = ""
        self._latest: tuple[float, list[tuple[float, Band]], list[int]] | None = None

    def learned(self, res: Sequence[float]) -> None:
        """Take one row of :meth:`FleetForecaster.learn_many`'s result."""
        drifted, err, actual, before = res
        self.drift_detected = bool(drifted)
        self.scored_now = None if err != err else (err, actual)
        self.model_before_drift = MODELS[int(before)] if drifted else ""
        self._latest = None

    def remember(self, timestamp: float, out: list[list[float]], chosen: list[int]) -> None:
        """Keep this row's forecasts from ``timestamp`` (a row of
        :meth:`FleetForecaster.forecast_many`, as lists), computed with other rows' at once,
        until the next sample is learned."""
        self._latest = (timestamp, [(p, (a, b, c, d)) for p, a, b, c, d in out], chosen)

    def _table(self, timestamp: float) -> tuple[float, list[tuple[float, Band]], list[int]]:
        latest = self._latest
        if latest is None or latest[0] != timestamp:
            out, chosen = self.fleet.forecast_many(self._rows, np.array([timestamp]))
            latest = self._latest = (timestamp, bands(out[0]), chosen[0].tolist())
        return latest

    def forecast_at(self, timestamp: float, horizons_s: Sequence[float] | None = None
                    ) -> list[tuple[float, Band]]:
        """(point, (lower_80, upper_80, lower_90, upper_90)) per horizon, from ``timestamp``.

        ``horizons_s`` must be among the forecaster's horizons (default: all of them).
        """
        table = self._table(timestamp)[1]
        if horizons_s is None:
            return list(table)
        return [table[self.horizons_s.index(float(h))] for h in horizons_s]

    def chosen_name(self, h: int = 0) -> str:
        """The model used at horizon index ``h`` now."""
        return self.fleet.chosen_name(self.row, h)

    def chosen_names(self, timestamp: float) -> list[str]:
        """The model of each horizon's forecast from ``timestamp``."""
        return [MODELS[c] for c in self._table(timestamp)[2]]

    def recent_cells(self, window_s: float) -> list[float]:
        """The recent values on a 5-minute grid (the newest of each cell) over ``window_s``."""
        return self.fleet.recent_cells(self.row, window_s)

    @property
    def period(self) -> int:
        """The periodic candidate's period, in 5-minute cells (0: none found)."""
        return self.fleet.period(self.row)

    @property
    def drifts_total(self) -> int:
        return self.fleet.drifts_total(self.row)

    @property
    def pending(self) -> int:
        """Forecasts remembered, awaiting their target time."""
        return self.fleet.pending(self.row)


class SeriesForecaster(SeriesView):
    """Forecasts of one series at fixed horizons, with 80 % and 90 % intervals.

    Parameters
    ----------
    horizons_s
        The horizons, in seconds.
    grid_s
        How often (event time) forecasts are remembered for scoring; bounds the state
        whatever the sampling rate. Defaults to the shortest horizon.
    """

    def __init__(self, horizons_s: Sequence[float] = (300.0, 900.0, 3600.0),
                 grid_s: float | None = None) -> None:
        super().__init__(FleetForecaster(horizons_s, rows=1, grid_s=grid_s), 0)
        self._now = 0.0

    def learn_one(self, timestamp: float, y: float) -> None:
        """Score the forecasts whose target time has come, then learn ``y``."""
        self._now = timestamp
        res = self.fleet.learn_many(self._rows, np.array([timestamp], dtype=np.float64),
                                    np.array([y], dtype=np.float64))
        self.learned(res[0].tolist())

    def forecast(self, horizon: int) -> list[float]:
        """River's verb: point forecasts at each configured horizon (``horizon`` of them)."""
        return [p for p, _ in self.forecast_at(self._now, self.horizons_s[:horizon])]

    def __getstate__(self) -> tuple[Any, ...]:
        f = self.fleet
        return (f.horizons_s, f.grid_s, self._now, f.f32, f.f64, f.i64)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        horizons_s, grid_s, now, f32, f64, i64 = state
        self.__init__(horizons_s, grid_s)  # type: ignore[misc]
        self._now = now
        self.fleet.f32[:], self.fleet.f64[:], self.fleet.i64[:] = f32, f64, i64
