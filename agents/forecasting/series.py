"""One series' forecaster: candidates, online selection, conformal intervals, drift.

:class:`SeriesForecaster` keeps the cheap candidates of
:mod:`agents.forecasting.candidates`. Every ``grid_s`` seconds it remembers what each candidate
forecast for every horizon; when the target time arrives it scores them (an exponentially
weighted mean absolute error per candidate and horizon) and, per horizon, forecasts with the
candidate that has erred least lately. Prediction intervals come from online quantiles of the
chosen forecast's own residuals in units of their recent size (locally weighted conformal:
each quantile moves up when a residual lands above it and down otherwise), so the 80 % and
90 % intervals keep their coverage as the series' volatility changes. A Page-Hinkley detector
watches the shortest horizon's errors; on drift, the error history is cut short so selection
and intervals adapt within hours instead of days.

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

from array import array
from collections import deque
from collections.abc import Sequence

from river import drift

from agents.forecasting.candidates import CANDIDATES, CandidateSet

#: (lower, upper) quantiles of the 80 % and 90 % intervals.
QUANTILES = (0.10, 0.90, 0.05, 0.95)
_ERROR_HALFLIFE = 288.0  # scored forecasts (a day at a 5-minute grid)
_QUANTILE_RATE = 0.02
_SCALE_HALFLIFE = 48.0  # scored forecasts
Band = tuple[float, float, float, float]


class SeriesForecaster:
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
        self.horizons_s = tuple(float(h) for h in horizons_s)
        self.grid_s = float(grid_s or min(self.horizons_s))
        self.candidates = CandidateSet()
        k, n_h = len(CANDIDATES), len(self.horizons_s)
        self.errors = array("d", [0.0] * (k * n_h))  # EW mean |error|, [horizon][candidate]
        self.scored = array("d", [0.0] * n_h)  # EW weight behind each horizon's errors
        self.quantiles = array("d", [0.0] * (len(QUANTILES) * n_h))
        self.scale = array("d", [0.0] * n_h)  # EW mean |residual| of the chosen forecast
        #: (made at, forecasts, scored mask). Forecasts: the flat candidates' values (the same
        #: at every horizon), then per horizon the daily profile's and the chosen one's.
        self.pending: deque[tuple[float, array[float], int]] = deque()
        self.last_grid = float("-inf")
        self.drift = drift.PageHinkley(min_instances=100, delta=0.1, threshold=50.0)
        self.drifts_total = 0
        self.drift_detected = False
        self._now = 0.0  # newest sample's time, for River's forecast(horizon)
        self._decay = 0.5 ** (1.0 / _ERROR_HALFLIFE)
        self._scale_decay = 0.5 ** (1.0 / _SCALE_HALFLIFE)

    # -- selection -------------------------------------------------------------------------
    def chosen(self, h: int) -> int:
        """Index in :data:`CANDIDATES` of the candidate used at horizon index ``h``."""
        k = len(CANDIDATES)
        if self.scored[h] < 3:
            return CANDIDATES.index("median_6")
        row = self.errors[h * k:(h + 1) * k]
        return min(range(k), key=row.__getitem__)

    def chosen_name(self, h: int = 0) -> str:
        return CANDIDATES[self.chosen(h)]

    # -- River verbs -----------------------------------------------------------------------
    def forecast_at(self, timestamp: float, horizons_s: Sequence[float] | None = None
                    ) -> list[tuple[float, Band]]:
        """(point, (lower_80, upper_80, lower_90, upper_90)) per horizon, from ``timestamp``.

        ``horizons_s`` must be among the forecaster's horizons (default: all of them).
        """
        wanted = self.horizons_s if horizons_s is None else tuple(float(h) for h in horizons_s)
        paths = self.candidates.forecast(timestamp, list(wanted))
        out = []
        for h_s, per_candidate in zip(wanted, paths, strict=True):
            h = self.horizons_s.index(h_s)
            point = per_candidate[self.chosen(h)]
            out.append(self._with_band(h, point))
        return out

    def _with_band(self, h: int, point: float) -> tuple[float, Band]:
        """The point and its intervals, never below 0. When the residuals have been lopsided
        enough that the point falls outside its own 80 % interval, the point moves to the
        interval's nearer edge (a bias correction) rather than the interval stretching."""
        s = self.scale[h]
        q = self.quantiles[h * len(QUANTILES):(h + 1) * len(QUANTILES)]
        a, b = max(0.0, point + s * q[0]), max(0.0, point + s * q[1])
        lo80, hi80 = min(a, b), max(a, b)  # the two quantiles may cross while they settle
        lo90 = max(0.0, min(point + s * q[2], lo80))
        hi90 = max(point + s * q[3], hi80)
        return min(max(point, lo80), hi80), (lo80, hi80, lo90, hi90)

    def forecast(self, horizon: int) -> list[float]:
        """River's verb: point forecasts at each configured horizon (``horizon`` of them)."""
        return [p for p, _ in self.forecast_at(self._now, self.horizons_s[:horizon])]

    def learn_one(self, timestamp: float, y: float) -> None:
        """Score the forecasts whose target time has come, then learn ``y``."""
        self._now = timestamp
        self.drift_detected = False
        self._score(timestamp, y)
        self.candidates.learn_one(timestamp, y)
        if timestamp - self.last_grid >= self.grid_s:
            self.last_grid = timestamp
            paths = self.candidates.forecast(timestamp, list(self.horizons_s))
            packed = array("f", paths[0][:-1])  # the flat candidates
            for h, per_candidate in enumerate(paths):
                packed.extend((per_candidate[-1], per_candidate[self.chosen(h)]))
            self.pending.append((timestamp, packed, 0))
            while self.pending and timestamp - self.pending[0][0] > max(self.horizons_s) + \
                    self.grid_s:
                self.pending.popleft()

    def _score(self, timestamp: float, y: float) -> None:
        k = len(CANDIDATES)
        tolerance = self.grid_s / 2.0
        for idx, (made_at, paths, mask) in enumerate(self.pending):
            for h, h_s in enumerate(self.horizons_s):
                if mask & (1 << h) or abs(made_at + h_s - timestamp) > tolerance:
                    continue
                mask |= 1 << h
                at = k - 1 + 2 * h  # this horizon's daily and chosen forecasts
                forecasts = [*paths[:k - 1], paths[at], paths[at + 1]]
                d = self._decay
                for c in range(k):
                    i = h * k + c
                    self.errors[i] = d * self.errors[i] + (1 - d) * abs(y - forecasts[c])
                self.scored[h] = d * self.scored[h] + 1.0
                self._update_quantiles(h, y - forecasts[k])
                if h == 0:
                    self._watch_drift(abs(y - forecasts[k]))
            self.pending[idx] = (made_at, paths, mask)

    def _update_quantiles(self, h: int, residual: float) -> None:
        """Quantiles of the residual in units of its recent size (locally weighted conformal):
        the interval is ``point + quantile * scale``, wide when errors have been large."""
        scale = self.scale[h]
        if scale > 0:
            z = residual / scale
            base = h * len(QUANTILES)
            for j, tau in enumerate(QUANTILES):
                q = self.quantiles[base + j]
                self.quantiles[base + j] = q + _QUANTILE_RATE * (tau - (1.0 if z < q else 0.0))
        d = self._scale_decay
        self.scale[h] = d * scale + (1 - d) * abs(residual) if scale else abs(residual)

    def _watch_drift(self, abs_error: float) -> None:
        ref = self.scale[0] or abs_error or 1.0
        self.drift.update(min(abs_error / ref, 50.0))
        if self.drift.drift_detected:
            self.drifts_total += 1
            self.drift_detected = True
            # Forget how the candidates did before the change: reselect on fresh evidence.
            for i in range(len(self.scored)):
                self.scored[i] = min(self.scored[i], 2.0)
            for i in range(len(self.errors)):
                self.errors[i] *= 0.1
