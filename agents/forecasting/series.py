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
from math import exp
from operator import mul

from agents.forecasting.candidates import CANDIDATES, N_FLAT, CandidateSet
from agents.forecasting.page_hinkley import PageHinkley

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

_K = len(MODELS)
_DEFAULT = CANDIDATES.index("median_6")  # chosen until a horizon has been scored a few times
_K_C = len(CANDIDATES)
_N_Q = len(QUANTILES)
#: Per horizon, a pending row holds the timed candidates', the combination's and the chosen
#: forecasts after the flat candidates' (see ``SeriesForecaster.pending``).
_TIMED = _K - N_FLAT + 1
#: What a stored :class:`SeriesForecaster` holds, in order: these attributes as they are ...
_STATE = ("horizons_s", "grid_s", "candidates", "pending", "last_grid", "drift", "drifts_total",
          "drift_detected", "scored_now", "_now", "_decay", "_scale_decay")
#: ... then these arrays' bytes (name, typecode).
_ARRAYS = (("errors", "f"), ("weights", "f"), ("scored", "d"), ("quantiles", "d"),
           ("scale", "d"), ("widen", "d"))


def _choice(errors: Sequence[float], scored: float) -> int:
    """The model (index in :data:`MODELS`) of the least recent error at one horizon, or the
    default until the horizon has been scored a few times."""
    return _DEFAULT if scored < 3 else min(range(_K), key=errors.__getitem__)


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
        self.drift = PageHinkley(min_instances=100, delta=0.1, threshold=50.0)
        self.drifts_total = 0
        self.drift_detected = False
        self.scored_now: tuple[float, float] | None = None
        self._now = 0.0  # newest sample's time, for River's forecast(horizon)
        self._decay = 0.5 ** (1.0 / _ERROR_HALFLIFE)
        self._scale_decay = 0.5 ** (1.0 / _SCALE_HALFLIFE)
        self._reset_memo()

    def _reset_memo(self) -> None:
        # What learning has not changed since it was computed (never stored): the model
        # chosen per horizon (once asked for), and the forecasts of every horizon from the
        # last timestamp forecast from since the newest sample: (timestamp, forecasts).
        self._chosen: list[int] | None = None
        self._latest: tuple[float, list[tuple[float, Band] | None]] | None = None
        #: after a sample whose errors drifted: the model chosen (shortest horizon) before it
        self.model_before_drift = ""
        # a time before which no pending forecast is due (-inf: not known)
        self._due_from = -math.inf

    def __getstate__(self) -> tuple[object, ...]:
        """A flat tuple, cheaper to store than the instance's dict: the attributes of
        ``_STATE``, then the bytes of each array of ``_ARRAYS`` (the memo is not stored)."""
        d = self.__dict__
        return (*[d[name] for name in _STATE], *[d[name].tobytes() for name, _ in _ARRAYS])

    def __setstate__(self, state: tuple[object, ...]) -> None:
        d = self.__dict__
        d.update(zip(_STATE, state, strict=False))  # the arrays follow
        for (name, typecode), raw in zip(_ARRAYS, state[len(_STATE):], strict=True):
            values = array(typecode)
            values.frombytes(raw)  # type: ignore[arg-type]
            d[name] = values
        self._reset_memo()

    # -- selection -------------------------------------------------------------------------
    def chosen(self, h: int) -> int:
        """Index in :data:`MODELS` of the model used at horizon index ``h``."""
        chosen = self._chosen
        if chosen is None:
            self._chosen = chosen = [-1] * len(self.horizons_s)  # -1: not chosen yet
        c = chosen[h]
        if c < 0:
            c = chosen[h] = _choice(self.errors[h * _K:(h + 1) * _K], self.scored[h])
        return c

    def chosen_name(self, h: int = 0) -> str:
        return MODELS[self.chosen(h)]

    # -- River verbs -----------------------------------------------------------------------
    def forecast_at(self, timestamp: float, horizons_s: Sequence[float] | None = None
                    ) -> list[tuple[float, Band]]:
        """(point, (lower_80, upper_80, lower_90, upper_90)) per horizon, from ``timestamp``.

        ``horizons_s`` must be among the forecaster's horizons (default: all of them).
        """
        latest = self._latest
        if latest is None or latest[0] != timestamp:
            latest = self._latest = (timestamp, [None] * len(self.horizons_s))
        # Each horizon computed when first asked for (each on its own, so a subset is the
        # same), remembered until the next sample is learned. Only the chosen candidate is
        # computed, unless the combination (of all of them) is chosen.
        bands = latest[1]
        wanted = (range(len(bands)) if horizons_s is None else
                  [self.horizons_s.index(float(h_s)) for h_s in horizons_s])
        candidates = self.candidates
        paths: list[list[float]] | None = None
        out = []
        for h in wanted:
            band = bands[h]
            if band is None:
                c = self.chosen(h)
                if c < _K_C:
                    point = candidates.one(c, timestamp, self.horizons_s[h])
                else:
                    if paths is None:
                        paths = candidates.forecast(timestamp, self.horizons_s)
                    point = self._combo(h, paths[h])
                band = bands[h] = self._with_band(h, point)
            out.append(band)
        return out

    def _combo(self, h: int, per_candidate: list[float]) -> float:
        """The combination's forecast at horizon index ``h``: the candidates' weighted sum."""
        return sum(map(mul, self.weights[h * _K_C:(h + 1) * _K_C], per_candidate))

    def _with_band(self, h: int, point: float) -> tuple[float, Band]:
        """The point and its intervals, never below 0. When the residuals have been lopsided
        enough that the point falls outside its own 80 % interval, the point moves to the
        interval's nearer edge (a bias correction) rather than the interval stretching."""
        # Written with conditionals instead of min() / max() (this runs for every forecast);
        # each is exactly the builtin's: max(x, y) is ``y if y > x else x`` and min(x, y) is
        # ``y if y < x else x``.
        scale = self.scale[h]
        s80, s90 = scale * exp(self.widen[2 * h]), scale * exp(self.widen[2 * h + 1])
        q = self.quantiles
        i = h * _N_Q
        a, b = point + s80 * q[i], point + s80 * q[i + 1]
        a = a if a > 0.0 else 0.0
        b = b if b > 0.0 else 0.0
        lo80 = b if b < a else a  # the two quantiles may cross while they settle
        hi80 = b if b > a else a
        lo90 = point + s90 * q[i + 2]
        lo90 = lo80 if lo80 < lo90 else lo90
        lo90 = lo90 if lo90 > 0.0 else 0.0
        hi90 = point + s90 * q[i + 3]
        hi90 = hi80 if hi80 > hi90 else hi90
        point = lo80 if lo80 > point else point
        return (hi80 if hi80 < point else point), (lo80, hi80, lo90, hi90)

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
        self._chosen = self._latest = None  # self._reset_memo(), inlined
        self._score(timestamp, y)
        self.candidates.learn_one(timestamp, y)
        if timestamp - self.last_grid >= self.grid_s:
            self.last_grid = timestamp
            paths = self.candidates.forecast(timestamp, self.horizons_s)
            packed = paths[0][:N_FLAT]  # the flat candidates
            latest: list[tuple[float, Band] | None] = []
            for h, per_candidate in enumerate(paths):
                combo = self._combo(h, per_candidate)
                c = self.chosen(h)
                point = per_candidate[c] if c < _K_C else combo
                packed += per_candidate[N_FLAT:]
                packed.append(combo)
                packed.append(point)
                latest.append(self._with_band(h, point))
            pending = self.pending
            pending.append(timestamp, packed)
            self._due_from = -math.inf
            self._latest = (timestamp, latest)
            kept_s = max(self.horizons_s) + self.grid_s
            while pending and timestamp - pending.made_at[0] > kept_s:
                pending.popleft()

    def _score(self, timestamp: float, y: float) -> None:
        if timestamp < self._due_from:
            return  # nothing pending is due yet (most samples)
        self._score_due(timestamp, y)
        self._due_from = self._next_due(timestamp)

    def _next_due(self, timestamp: float) -> float:
        """A time before which no pending forecast can be due, with two seconds to spare
        either way: the earliest target time (less the tolerance) of the forecasts not yet
        scored at a horizon and not yet past it. Rows are in time order, so per horizon that
        is the first such row after those already past."""
        slack = self.grid_s / 2.0 + 2.0
        pending = self.pending
        made, mask, n = pending.made_at, pending.mask, len(pending)
        soonest = math.inf
        for h, h_s in enumerate(self.horizons_s):
            bit = 1 << h
            i = bisect_left(made, timestamp - h_s - slack)  # rows before: past (time moves on)
            while i < n and mask[i] & bit:
                i += 1
            if i < n:
                soonest = min(soonest, made[i] + h_s - slack)
        return soonest

    def _score_due(self, timestamp: float, y: float) -> None:
        horizons_s = self.horizons_s
        tolerance = self.grid_s / 2.0
        pending = self.pending
        made = pending.made_at
        # Rows are in time order: those due at horizon h were made about h before now. Each
        # row found near there (a second of slack against rounding) and not yet scored at h
        # is checked exactly.
        due = []
        for h, h_s in enumerate(horizons_s):
            bit = 1 << h
            for idx in range(bisect_left(made, timestamp - h_s - tolerance - 1.0),
                             bisect_right(made, timestamp - h_s + tolerance + 1.0)):
                if not pending.mask[idx] & bit:
                    due.append((idx, h))
        if not due:
            return
        due.sort()  # by row, then horizon (no pair twice: one range per horizon)
        errors = self.errors
        before = (errors[:_K], self.scored[0])  # the shortest horizon's choice before
        d = self._decay
        fresh = 1 - d
        for idx, h in due:
            made_at = made[idx]
            if made_at + horizons_s[0] - timestamp > tolerance:
                break  # later rows are not due either
            if abs(made_at + horizons_s[h] - timestamp) > tolerance:
                continue
            # the flat candidates', then this horizon's timed candidates', the combination's
            # and the chosen forecasts
            row = idx * pending.width
            at = row + N_FLAT + _TIMED * h
            forecasts = pending.values[row:row + N_FLAT].tolist()
            forecasts += pending.values[at:at + _TIMED].tolist()
            base = h * _K
            for j in range(_K):
                errors[base + j] = d * errors[base + j] + fresh * abs(y - forecasts[j])
            self.scored[h] = d * self.scored[h] + 1.0
            chosen = forecasts[_K]
            self._update_weights(h, forecasts[:_K_C], forecasts[_K_C], y)
            self._update_widths(h, chosen, y)
            self._update_quantiles(h, y - chosen)
            if h == 0:
                self._watch_drift(abs(y - chosen), before)
                self.scored_now = (abs(y - chosen), abs(y))
            pending.mask[idx] |= 1 << h  # scored at this horizon

    def _update_weights(self, h: int, candidates: Sequence[float], combo: float,
                        y: float) -> None:
        """One exponentiated-gradient step on the absolute error of the combination: weight
        moves towards the candidates on the actual's side of the combined forecast."""
        scale = self.scale[h]
        if not scale or combo == y:
            return
        sign = 1.0 if combo > y else -1.0
        base = h * _K_C
        weights = self.weights
        stepped = array("f")  # single precision, as stored, before they are added up
        for wi, f in zip(weights[base:base + _K_C], candidates, strict=True):
            z = sign * (f - combo) / scale
            z = z if z < 3.0 else 3.0  # min(3.0, z)
            z = z if z > -3.0 else -3.0  # max(-3.0, z)
            stepped.append(wi * exp(-_COMBO_RATE * z))
        total = sum(stepped)
        for j, wi in enumerate(stepped):
            w = wi / total
            weights[base + j] = 1e-4 if w < 1e-4 else w  # max(w, 1e-4)

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
        widen = self.widen
        i = 2 * h
        for lo, hi, miss_rate in ((lo80, hi80, 0.2), (lo90, hi90, 0.1)):
            missed = 0.0 if lo <= y <= hi else 1.0
            w = widen[i] + _WIDEN_RATE * (missed - miss_rate) / miss_rate
            w = w if w < 3.0 else 3.0  # min(3.0, w)
            widen[i] = w if w > -3.0 else -3.0  # max(-3.0, w)
            i += 1

    def _update_quantiles(self, h: int, residual: float) -> None:
        """Quantiles of the residual in units of its recent size (locally weighted conformal):
        the interval is ``point + quantile * scale``, wide when errors have been large."""
        scale = self.scale[h]
        if scale > 0:
            z = residual / scale
            quantiles = self.quantiles
            j = h * _N_Q
            for tau in QUANTILES:
                q = quantiles[j]
                quantiles[j] = q + _QUANTILE_RATE * (tau - (1.0 if z < q else 0.0))
                j += 1
        d = self._scale_decay
        self.scale[h] = d * scale + (1 - d) * abs(residual) if scale else abs(residual)

    def _watch_drift(self, abs_error: float, before: tuple[array[float], float]) -> None:
        ref = self.scale[0] or abs_error or 1.0
        self.drift.update(min(abs_error / ref, 50.0))
        if self.drift.drift_detected:
            self.drifts_total += 1
            self.drift_detected = True
            self.model_before_drift = MODELS[_choice(*before)]
            # Forget how the candidates did before the change: reselect on fresh evidence.
            for i in range(len(self.scored)):
                self.scored[i] = min(self.scored[i], 2.0)
            for i in range(len(self.errors)):
                self.errors[i] *= 0.1
