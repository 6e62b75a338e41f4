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

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from river import drift

from agents.forecasting.candidates import CANDIDATES, N_FLAT, CandidateSet

#: What selection chooses from: every candidate, then their learned combination.
MODELS: tuple[str, ...] = (*CANDIDATES, "combo")

#: (lower, upper) quantiles of the 80 % and 90 % intervals.
QUANTILES = (0.10, 0.90, 0.05, 0.95)
_ERROR_HALFLIFE = 288.0  # scored forecasts (a day at a 5-minute grid)
_QUANTILE_RATE = 0.02
_SCALE_HALFLIFE = 48.0  # scored forecasts
_COMBO_RATE = 0.05  # exponentiated-gradient step, per scored forecast
_WIDEN_RATE = 0.01  # adaptive conformal step on the log width, per scored forecast
Band = tuple[float, float, float, float]


class Pending:
    """Forecasts awaiting their target time: rows of ``width`` single-precision values in one
    flat array, with when each was made and which horizons have been scored (a bit each)."""

    __slots__ = ("made_at", "mask", "values", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.made_at = array("d")
        self.mask = array("B")
        self.values = array("f")

    def append(self, made_at: float, row: Sequence[float]) -> None:
        self.made_at.append(made_at)
        self.mask.append(0)
        self.values.extend(row)

    def popleft(self) -> None:
        del self.made_at[0], self.mask[0], self.values[:self.width]

    def row(self, i: int) -> array[float]:
        return self.values[i * self.width:(i + 1) * self.width]

    def __len__(self) -> int:
        return len(self.made_at)

    def __getstate__(self) -> tuple[int, bytes, bytes, bytes]:
        return (self.width, self.made_at.tobytes(), self.mask.tobytes(), self.values.tobytes())

    def __setstate__(self, s: tuple[int, bytes, bytes, bytes]) -> None:
        self.width = s[0]
        self.made_at, self.mask, self.values = array("d"), array("B"), array("f")
        self.made_at.frombytes(s[1])
        self.mask.frombytes(s[2])
        self.values.frombytes(s[3])


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
        k, n_h = len(MODELS), len(self.horizons_s)
        self.errors = array("f", [0.0] * (k * n_h))  # EW mean |error|, [horizon][model]
        k_c = len(CANDIDATES)
        self.weights = array("f", [1.0 / k_c] * (k_c * n_h))  # combo weights, [horizon][cand]
        self.scored = array("d", [0.0] * n_h)  # EW weight behind each horizon's errors
        self.quantiles = array("d", [0.0] * (len(QUANTILES) * n_h))
        self.scale = array("d", [0.0] * n_h)  # EW mean |residual| of the chosen forecast
        self.widen = array("d", [0.0] * (2 * n_h))  # log width factor, [horizon][80 %, 90 %]
        #: Forecasts awaiting their target time. A row: the flat candidates' values (the same
        #: at every horizon), then per horizon the timed candidates' (daily, periodic,
        #: Holt-Winters), the combination's and the chosen one's.
        self.pending = Pending(N_FLAT + (k - N_FLAT + 1) * n_h)
        self.last_grid = float("-inf")
        self.drift = drift.PageHinkley(min_instances=100, delta=0.1, threshold=50.0)
        self.drifts_total = 0
        self.drift_detected = False
        self.scored_now: tuple[float, float] | None = None
        self._now = 0.0  # newest sample's time, for River's forecast(horizon)
        self._decay = 0.5 ** (1.0 / _ERROR_HALFLIFE)
        self._scale_decay = 0.5 ** (1.0 / _SCALE_HALFLIFE)
        self._reset_memo()

    def _reset_memo(self) -> None:
        # What learning has not changed since it was computed (never stored): the model
        # chosen per horizon, and the forecasts of every horizon as of the newest sample.
        self._chosen: list[int] | None = None
        self._latest: tuple[float, list[tuple[float, Band]]] | None = None

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("_chosen", None)
        state.pop("_latest", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._reset_memo()

    # -- selection -------------------------------------------------------------------------
    def chosen(self, h: int) -> int:
        """Index in :data:`MODELS` of the model used at horizon index ``h``."""
        if self._chosen is None:
            k = len(MODELS)
            default = CANDIDATES.index("median_6")
            self._chosen = [
                default if self.scored[i] < 3
                else min(range(k), key=self.errors[i * k:(i + 1) * k].__getitem__)
                for i in range(len(self.horizons_s))]
        return self._chosen[h]

    def chosen_name(self, h: int = 0) -> str:
        return MODELS[self.chosen(h)]

    # -- River verbs -----------------------------------------------------------------------
    def forecast_at(self, timestamp: float, horizons_s: Sequence[float] | None = None
                    ) -> list[tuple[float, Band]]:
        """(point, (lower_80, upper_80, lower_90, upper_90)) per horizon, from ``timestamp``.

        ``horizons_s`` must be among the forecaster's horizons (default: all of them).
        """
        wanted = self.horizons_s if horizons_s is None else tuple(float(h) for h in horizons_s)
        if self._latest is not None and self._latest[0] == timestamp:
            latest = self._latest[1]
            return [latest[self.horizons_s.index(h_s)] for h_s in wanted]
        paths = self.candidates.forecast(timestamp, list(wanted))
        out = []
        for h_s, per_candidate in zip(wanted, paths, strict=True):
            h = self.horizons_s.index(h_s)
            point = self._models(h, per_candidate)[self.chosen(h)]
            out.append(self._with_band(h, point))
        return out

    def _models(self, h: int, per_candidate: list[float]) -> list[float]:
        """Every model's forecast at horizon index ``h``: the candidates', then the combo's."""
        k = len(CANDIDATES)
        w = self.weights[h * k:(h + 1) * k]
        return [*per_candidate, sum(wi * f for wi, f in zip(w, per_candidate, strict=True))]

    def _with_band(self, h: int, point: float) -> tuple[float, Band]:
        """The point and its intervals, never below 0. When the residuals have been lopsided
        enough that the point falls outside its own 80 % interval, the point moves to the
        interval's nearer edge (a bias correction) rather than the interval stretching."""
        scale = self.scale[h]
        s80, s90 = scale * math.exp(self.widen[2 * h]), scale * math.exp(self.widen[2 * h + 1])
        q = self.quantiles[h * len(QUANTILES):(h + 1) * len(QUANTILES)]
        a, b = max(0.0, point + s80 * q[0]), max(0.0, point + s80 * q[1])
        lo80, hi80 = min(a, b), max(a, b)  # the two quantiles may cross while they settle
        lo90 = max(0.0, min(point + s90 * q[2], lo80))
        hi90 = max(point + s90 * q[3], hi80)
        return min(max(point, lo80), hi80), (lo80, hi80, lo90, hi90)

    def forecast(self, horizon: int) -> list[float]:
        """River's verb: point forecasts at each configured horizon (``horizon`` of them)."""
        return [p for p, _ in self.forecast_at(self._now, self.horizons_s[:horizon])]

    def learn_one(self, timestamp: float, y: float) -> None:
        """Score the forecasts whose target time has come, then learn ``y``. Sets
        ``scored_now`` to (|error|, |actual|) of the shortest horizon's forecast for this
        sample, if one was due (for the worker's online-error metric)."""
        self._now = timestamp
        self.drift_detected = False
        self.scored_now = None
        self._reset_memo()
        self._score(timestamp, y)
        self.candidates.learn_one(timestamp, y)
        if timestamp - self.last_grid >= self.grid_s:
            self.last_grid = timestamp
            paths = self.candidates.forecast(timestamp, list(self.horizons_s))
            packed = paths[0][:N_FLAT]  # the flat candidates
            latest = []
            for h, per_candidate in enumerate(paths):
                models = self._models(h, per_candidate)
                point = models[self.chosen(h)]
                packed.extend((*models[N_FLAT:], point))
                latest.append(self._with_band(h, point))
            self.pending.append(timestamp, packed)
            self._latest = (timestamp, latest)
            while self.pending and timestamp - self.pending.made_at[0] > max(self.horizons_s) + \
                    self.grid_s:
                self.pending.popleft()

    def _score(self, timestamp: float, y: float) -> None:
        k = len(MODELS)
        tolerance = self.grid_s / 2.0
        pending = self.pending
        made = pending.made_at
        # Rows are in time order: those due at horizon h were made about h before now. Each
        # row found near there (a second of slack against rounding) is checked exactly.
        due = sorted({(idx, h) for h, h_s in enumerate(self.horizons_s)
                      for idx in range(bisect_left(made, timestamp - h_s - tolerance - 1.0),
                                       bisect_right(made, timestamp - h_s + tolerance + 1.0))})
        for idx, h in due:
            made_at, mask = made[idx], pending.mask[idx]
            if made_at + self.horizons_s[0] - timestamp > tolerance:
                break  # later rows are not due either
            h_s = self.horizons_s[h]
            if mask & (1 << h) or abs(made_at + h_s - timestamp) > tolerance:
                continue
            paths = pending.row(idx)
            mask |= 1 << h
            # this horizon's timed candidates', the combination's and the chosen forecasts
            at = N_FLAT + (k - N_FLAT + 1) * h
            forecasts = [*paths[:N_FLAT], *paths[at:at + k - N_FLAT + 1]]
            d, fresh = self._decay, 1 - self._decay
            base = h * k
            self.errors[base:base + k] = array("f", [
                d * e + fresh * abs(y - f)
                for e, f in zip(self.errors[base:base + k], forecasts, strict=False)])
            self.scored[h] = d * self.scored[h] + 1.0
            self._update_weights(h, forecasts[:k - 1], forecasts[k - 1], y)
            self._update_widths(h, forecasts[k], y)
            self._update_quantiles(h, y - forecasts[k])
            if h == 0:
                self._watch_drift(abs(y - forecasts[k]))
                self.scored_now = (abs(y - forecasts[k]), abs(y))
            pending.mask[idx] = mask

    def _update_weights(self, h: int, candidates: Sequence[float], combo: float,
                        y: float) -> None:
        """One exponentiated-gradient step on the absolute error of the combination: weight
        moves towards the candidates on the actual's side of the combined forecast."""
        scale = self.scale[h]
        if not scale or combo == y:
            return
        k = len(CANDIDATES)
        sign = 1.0 if combo > y else -1.0
        base = h * k
        exp = math.exp
        stepped = array("f", [  # single precision, as stored, before they are added up
            wi * exp(-_COMBO_RATE * max(-3.0, min(3.0, sign * (f - combo) / scale)))
            for wi, f in zip(self.weights[base:base + k], candidates, strict=True)])
        total = sum(stepped)
        self.weights[base:base + k] = array("f", [max(wi / total, 1e-4) for wi in stepped])

    def _update_widths(self, h: int, point: float, y: float) -> None:
        """Adaptive conformal inference (Gibbs & Candes, 2021) on each interval's width: wider
        after a miss, narrower after a hit, so coverage converges to its level even where the
        residual quantiles cannot get it right alone (ties: a series that often repeats its
        value exactly, such as a disk idle at 0, is covered by any interval at those times, so
        its coverage cannot fall below the share of exact repeats; the widths shrink towards
        it)."""
        if not self.scale[h]:
            return
        _, (lo80, hi80, lo90, hi90) = self._with_band(h, point)
        for j, (lo, hi, miss_rate) in enumerate(((lo80, hi80, 0.2), (lo90, hi90, 0.1))):
            missed = 0.0 if lo <= y <= hi else 1.0
            i = 2 * h + j
            self.widen[i] = max(-3.0, min(3.0, self.widen[i] + _WIDEN_RATE * (missed - miss_rate)
                                          / miss_rate))

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
