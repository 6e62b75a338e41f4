"""The series forecaster as it was in plain Python (before the compiled kernels): the oracle
the kernels are compared with, bit for bit, in ``test_forecast_kernels.py``. Not product code.
"""

from __future__ import annotations

import itertools
import math
import statistics
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from math import exp
from operator import mul
from typing import Any, Literal

import numpy as np

_DAY_S = 86400.0
_SEASON_HOURS = 24
_HW_PATH_HOURS = 3  # hours ahead the Holt-Winters path reaches (the longest horizon: 1 h)

#: Rolling-median lengths, in samples.
MEDIAN_LENGTHS = (3, 6, 12, 24, 48)
#: Long rolling-median lengths, in cells of the periodic candidate's time grid (8 h, 24 h at
#: the default 5 minutes).
LONG_MEDIAN_CELLS = (96, 288)
#: Exponential smoothing factors.
EWMA_ALPHAS = (0.1, 0.3, 0.6)
#: The candidates, in a fixed order (the order of every per-candidate array).
CANDIDATES: tuple[str, ...] = (
    "last", *(f"ewma_{a:g}" for a in EWMA_ALPHAS), *(f"median_{n}" for n in MEDIAN_LENGTHS),
    *(f"median_{n}c" for n in LONG_MEDIAN_CELLS), "daily", "periodic", "holt_winters",
)

#: How many of :data:`CANDIDATES` (the first ones) forecast the same value at every horizon.
N_FLAT = len(CANDIDATES) - 3


class Ring:
    """The last ``size`` values, oldest first, in a compact array (``typecode`` ``"d"`` for
    doubles, ``"f"`` for single precision where that is plenty)."""

    __slots__ = ("size", "values")

    def __init__(self, size: int, typecode: Literal["d", "f"] = "d") -> None:
        self.size = size
        self.values: array[float] = array(typecode)

    def append(self, y: float) -> None:
        self.values.append(y)
        if len(self.values) > self.size:
            del self.values[0]

    def __len__(self) -> int:
        return len(self.values)

    def __getstate__(self) -> tuple[int, str, bytes]:
        return (self.size, self.values.typecode, self.values.tobytes())

    def __setstate__(self, s: tuple[int, str, bytes]) -> None:
        self.size = s[0]
        self.values = array(s[1])
        self.values.frombytes(s[2])


def median_of_last(ring: Ring, n: int) -> float:
    """Median of the last ``n`` values (fewer while the ring fills)."""
    return _median_of_sorted(sorted(ring.values[-n:])) if len(ring) else 0.0


def _or_last(v: float, last: float) -> float:
    """A timed candidate's forecast: ``last`` where it has none (NaN), never below 0."""
    return last if v != v else (v if v > 0.0 else 0.0)  # max(0.0, v), without the call


def _median_of_sorted(s: list[float]) -> float:
    """:func:`statistics.median` of values already sorted (at least one), bit for bit: the
    middle one, or the mean ``(a + b) / 2`` of the middle two."""
    n = len(s)
    i = n // 2
    return s[i] if n % 2 else (s[i - 1] + s[i]) / 2


class DailyProfile:
    """The level of each time-of-day slot, learned by exponential smoothing.

    ``slots`` per day (48: half-hours) whatever the sampling step, so state does not grow with
    the reporting rate.
    """

    __slots__ = ("alpha", "levels", "slots")

    def __init__(self, slots: int = 48, alpha: float = 0.2) -> None:
        self.slots = slots
        self.alpha = alpha
        self.levels = array("f", [float("nan")] * slots)

    def _slot(self, timestamp: float) -> int:
        return int((timestamp % _DAY_S) / _DAY_S * self.slots)

    def learn_one(self, timestamp: float, y: float) -> None:
        i = int((timestamp % _DAY_S) / _DAY_S * self.slots)  # self._slot(timestamp), inlined
        levels = self.levels
        old = levels[i]
        levels[i] = y if old != old else old + self.alpha * (y - old)

    def at(self, timestamp: float, default: float) -> float:
        v = self.levels[int((timestamp % _DAY_S) / _DAY_S * self.slots)]  # self._slot(...)
        return default if v != v else v

    def __getstate__(self) -> tuple[int, float, bytes]:
        return (self.slots, self.alpha, self.levels.tobytes())

    def __setstate__(self, s: tuple[int, float, bytes]) -> None:
        self.slots, self.alpha = s[0], s[1]
        self.levels = array("f")
        self.levels.frombytes(s[2])


class PeriodicNaive:
    """Seasonal naive at a short period found by autocorrelation (a job every 40 minutes, a
    batch every 3 hours, ...): the median of the values one, two and three periods before the
    target time.

    Values are kept on a ``cell_s`` grid (the newest sample of each cell), ``cells`` of them;
    the period (2 to ``cells // 3`` cells) is re-estimated every ``every`` cells and kept only
    when its autocorrelation exceeds ``min_acf``. Without one, it forecasts nothing (NaN).

    >>> p = PeriodicNaive(cell_s=300.0)
    >>> for i in range(200):
    ...     p.learn_one(300.0 * i, 10.0 if i % 8 == 0 else 1.0)
    >>> p.period, p.at(300.0 * 199, 300.0), p.at(300.0 * 199, 600.0)
    (8, 10.0, 1.0)
    """

    __slots__ = ("cell_s", "cells", "every", "last_cell", "long_medians", "min_acf", "period",
                 "ring", "since")

    def __init__(self, cell_s: float = 300.0, cells: int = 288, every: int = 12,
                 min_acf: float = 0.3) -> None:
        self.cell_s = cell_s
        self.cells = cells
        self.every = every
        self.min_acf = min_acf
        self.ring = Ring(cells, "f")
        self.last_cell = -1
        self.period = 0
        self.since = 0
        self.long_medians = [float("nan")] * len(LONG_MEDIAN_CELLS)

    def learn_one(self, timestamp: float, y: float) -> None:
        cell = int(timestamp // self.cell_s)
        if cell == self.last_cell and self.ring.values:
            self.ring.values[-1] = y
            return
        gap = min(cell - self.last_cell, self.cells) if self.last_cell >= 0 else 1
        for _ in range(max(gap, 1)):
            self.ring.append(y)
        self.last_cell = cell
        self.since += 1
        if self.since >= self.every or self.long_medians[0] != self.long_medians[0]:
            # Both move slowly: refreshed every ``every`` cells.
            self.since = 0
            values = np.asarray(self.ring.values)
            self.long_medians = [float(np.median(values[-n:])) for n in LONG_MEDIAN_CELLS]
            if len(self.ring) >= self.cells // 2:
                self.period = self._estimate(values)

    @staticmethod
    def _autocorrelation(values: np.ndarray) -> np.ndarray:
        """Autocorrelation at lags 1 .. len // 3 (index 0 is lag 1); zeros for a flat series."""
        x = values - values.mean()
        denom = float(x @ x)
        n = len(x)
        if denom <= 0.0:
            return np.zeros(n // 3)
        return np.correlate(x, x, mode="full")[n:n + n // 3] / denom

    def _estimate(self, values: np.ndarray) -> int:
        acf = self._autocorrelation(values).tolist()  # plain floats: faster to compare
        # A period is a local maximum of the autocorrelation above the bar (lag >= 2).
        best, best_acf = 0, self.min_acf
        for lag in range(2, len(acf)):
            a = acf[lag - 1]
            if a > best_acf and a >= acf[lag - 2] and (lag == len(acf) or a >= acf[lag]):
                best, best_acf = lag, a
        return best

    def at(self, timestamp: float, horizon_s: float) -> float:
        """The forecast for ``timestamp + horizon_s``, NaN without a period."""
        p, n = self.period, len(self.ring)
        if not p:
            return float("nan")
        ahead = int((timestamp + horizon_s) // self.cell_s) - self.last_cell
        k0 = max(1, -(-ahead // p))
        values = self.ring.values
        i = n - 1 + ahead - k0 * p  # one period before the target, then two, then three
        past = sorted([values[j] for j in (i, i - p, i - 2 * p) if 0 <= j < n])
        return _median_of_sorted(past) if past else float("nan")

    def __getstate__(self) -> tuple[object, ...]:
        return (self.cell_s, self.cells, self.every, self.min_acf, self.ring, self.last_cell,
                self.period, self.since, self.long_medians)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        (self.cell_s, self.cells, self.every, self.min_acf, self.ring, self.last_cell,
         self.period, self.since, self.long_medians) = s  # type: ignore[assignment]


class HourlyHoltWinters:
    """Additive Holt-Winters with a daily season, on hourly means.

    River's ``time_series.HoltWinters`` recurrences, step for step (tested against River on
    the same stream), in a few floats instead of River's deque per component: 24 seasonal
    values whatever the reporting rate, one update an hour. Like River, it forecasts nothing
    (NaN) until a full season has been learned, and selection uses the other candidates.
    Unlike River (0.26), the season starts as differences from the first day's mean, not
    ratios to it (``y / level`` biases an additive season for days).

    >>> hw = HourlyHoltWinters()
    >>> for i in range(24 * 12 * 10):
    ...     hw.learn_one(300.0 * i, 50.0 + (20.0 if (i // 12) % 24 >= 12 else 0.0))
    >>> round(hw.at(300.0 * 2879, 0.0)), round(hw.at(300.0 * 2879, 300.0))
    (71, 51)
    """

    __slots__ = ("alpha", "beta", "count", "first", "gamma", "hour", "level", "path", "pos",
                 "season", "total", "trend")

    def __init__(self, alpha: float = 0.1, beta: float = 0.01, gamma: float = 0.5) -> None:
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.hour = -1
        self.total = 0.0
        self.count = 0
        #: the hourly means of the first day, until the season starts (then empty)
        self.first: list[float] = []
        #: (previous, current) level and trend; the season's 24 values, ``pos`` the oldest
        self.level = (0.0, 0.0)
        self.trend = (0.0, 0.0)
        self.season = array("d")
        self.pos = 0
        #: the next hours' forecasts (empty before a full season)
        self.path: tuple[float, ...] = ()

    def learn_one(self, timestamp: float, y: float) -> None:
        hour = int(timestamp // 3600.0)
        if hour != self.hour and self.count:
            # Shifted by one (and back in the forecasts): River divides by the first day's
            # mean while it starts, which must not be 0 for a series that starts idle; the
            # shift keeps the arithmetic River's.
            self._learn_hour(self.total / self.count + 1.0)
            self.total, self.count = 0.0, 0
        self.hour = hour
        self.total += y
        self.count += 1

    def _learn_hour(self, y: float) -> None:
        season = self.season
        if not season:
            first = self.first
            first.append(y)
            if len(first) < _SEASON_HOURS:
                return
            level = statistics.mean(first)
            self.level = (level, level)
            self.trend = (0.0, statistics.mean([b - a for a, b in itertools.pairwise(first)]))
            season.extend(v - level for v in first)
            self.first = []
        else:
            alpha, beta, gamma = self.alpha, self.beta, self.gamma
            level, trend = self.level[1], self.trend[1]
            s = season[self.pos]  # the value one season back
            new_level = alpha * (y - s) + (1 - alpha) * (level + trend)
            new_trend = beta * (new_level - level) + (1 - beta) * trend
            season[self.pos] = gamma * (y - level - trend) + (1 - gamma) * s
            self.pos = (self.pos + 1) % _SEASON_HOURS
            self.level, self.trend = (level, new_level), (trend, new_trend)
        level, trend = self.level[1], self.trend[1]
        self.path = tuple(level + (h + 1) * trend + season[(self.pos + h) % _SEASON_HOURS] - 1.0
                          for h in range(_HW_PATH_HOURS))

    def at(self, timestamp: float, horizon_s: float) -> float:
        """The forecast for the hour holding ``timestamp + horizon_s``; NaN before a season."""
        ahead = int((timestamp + horizon_s) // 3600.0) - self.hour
        return self.path[ahead] if 0 <= ahead < len(self.path) else float("nan")

    def __getstate__(self) -> tuple[object, ...]:
        return (self.alpha, self.beta, self.gamma, self.hour, self.total, self.count,
                self.first, self.level, self.trend, self.season.tobytes(), self.pos, self.path)

    def __setstate__(self, s: tuple[Any, ...]) -> None:
        (self.alpha, self.beta, self.gamma, self.hour, self.total, self.count, self.first,
         self.level, self.trend, season, self.pos, self.path) = s
        self.season = array("d")
        self.season.frombytes(season)


class CandidateSet:
    """Every candidate of :data:`CANDIDATES` for one series."""

    def __init__(self) -> None:
        self.ring = Ring(max(MEDIAN_LENGTHS), "f")
        self.ewma = array("d", [0.0] * len(EWMA_ALPHAS))
        self.profile = DailyProfile()
        self.periodic = PeriodicNaive()
        self.holt_winters = HourlyHoltWinters()
        self.n = 0

    def __getstate__(self) -> tuple[object, ...]:
        # A tuple is cheaper to store than the instance's dict.
        return (self.ring, self.ewma.tobytes(), self.profile, self.periodic, self.holt_winters,
                self.n)

    def __setstate__(self, s: tuple[Any, ...]) -> None:
        self.ring, ewma, self.profile, self.periodic, self.holt_winters, self.n = s
        self.ewma = array("d")
        self.ewma.frombytes(ewma)

    def learn_one(self, timestamp: float, y: float) -> None:
        self.ring.append(y)
        ewma = self.ewma
        if self.n:
            for i, a in enumerate(EWMA_ALPHAS):
                e = ewma[i]
                ewma[i] = e + a * (y - e)
        else:
            for i in range(len(EWMA_ALPHAS)):
                ewma[i] = y
        self.profile.learn_one(timestamp, y)
        self.periodic.learn_one(timestamp, y)
        self.holt_winters.learn_one(timestamp, y)
        self.n += 1

    def flat(self) -> list[float]:
        """The flat candidates' forecasts (the first :data:`N_FLAT`), in :data:`CANDIDATES`
        order."""
        values = self.ring.values
        last = values[-1] if self.n else 0.0
        out = [last, *self.ewma]
        if values:
            recent = values.tolist()  # as Python floats once, not once per length
            for n in MEDIAN_LENGTHS:  # median_of_last(self.ring, n), inlined
                s = recent[-n:]
                s.sort()
                m = len(s)
                i = m // 2
                out.append(s[i] if m % 2 else (s[i - 1] + s[i]) / 2)
        else:
            out += [0.0] * len(MEDIAN_LENGTHS)
        out += [v if v == v else last for v in self.periodic.long_medians]
        return out

    def one(self, c: int, timestamp: float, horizon_s: float) -> float:
        """Candidate ``c``'s forecast (index in :data:`CANDIDATES`) at one horizon: what
        :meth:`forecast` gives for it, computing none of the others."""
        values = self.ring.values
        last = values[-1] if self.n else 0.0
        if c >= N_FLAT:  # the timed ones: daily, periodic, holt_winters
            if c == N_FLAT:
                return self.profile.at(timestamp + horizon_s, last)
            model = self.periodic if c == N_FLAT + 1 else self.holt_winters
            return _or_last(model.at(timestamp, horizon_s), last)
        if c == 0:
            return last
        if c <= len(EWMA_ALPHAS):
            return self.ewma[c - 1]
        c -= 1 + len(EWMA_ALPHAS)
        if c < len(MEDIAN_LENGTHS):
            return _median_of_sorted(sorted(values[-MEDIAN_LENGTHS[c]:])) if values else 0.0
        v = self.periodic.long_medians[c - len(MEDIAN_LENGTHS)]
        return v if v == v else last

    def forecast(self, timestamp: float, horizons_s: Sequence[float]) -> list[list[float]]:
        """Per horizon, every candidate's forecast in :data:`CANDIDATES` order."""
        flat = self.flat()
        last = flat[0]
        periodic, holt_winters, profile = self.periodic, self.holt_winters, self.profile
        out = []
        for h in horizons_s:
            out.append([*flat, profile.at(timestamp + h, last),
                        _or_last(periodic.at(timestamp, h), last),
                        _or_last(holt_winters.at(timestamp, h), last)])
        return out



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


class PageHinkley:
    """Page-Hinkley test for a change in the mean, up or down.

    Parameters
    ----------
    min_instances
        Values seen before a change can be signalled.
    delta
        The magnitude of change tolerated.
    threshold
        How far a cumulative deviation must move from its extreme to signal a change.
    alpha
        The forgetting factor of the cumulative deviations.
    """

    __slots__ = ("alpha", "delta", "drift_detected", "max_decrease", "mean", "min_increase",
                 "min_instances", "n", "sum_decrease", "sum_increase", "threshold")

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.drift_detected = False
        self._reset()

    def _reset(self) -> None:
        self.n = 0.0
        self.mean = 0.0
        self.sum_increase = 0.0
        self.sum_decrease = 0.0
        self.min_increase = math.inf
        self.max_decrease = -1.0
        self.drift_detected = False

    def update(self, x: float) -> None:
        """Learn ``x``; sets ``drift_detected``."""
        if self.drift_detected:
            self._reset()
        self.n += 1.0
        self.mean += (1.0 / self.n) * (x - self.mean)
        dev = x - self.mean
        self.sum_increase = self.alpha * self.sum_increase + dev - self.delta
        self.sum_decrease = self.alpha * self.sum_decrease + dev + self.delta
        if self.sum_increase < self.min_increase:
            self.min_increase = self.sum_increase
        if self.sum_decrease > self.max_decrease:
            self.max_decrease = self.sum_decrease
        if self.n >= self.min_instances:
            self.drift_detected = (self.sum_increase - self.min_increase > self.threshold
                                   or self.max_decrease - self.sum_decrease > self.threshold)

    def __getstate__(self) -> tuple[float | bool, ...]:
        return (self.min_instances, self.delta, self.threshold, self.alpha, self.drift_detected,
                self.n, self.mean, self.sum_increase, self.sum_decrease, self.min_increase,
                self.max_decrease)

    def __setstate__(self, s: tuple[float | bool, ...]) -> None:
        (min_instances, self.delta, self.threshold, self.alpha, drift_detected, self.n,
         self.mean, self.sum_increase, self.sum_decrease, self.min_increase,
         self.max_decrease) = s
        self.min_instances = int(min_instances)
        self.drift_detected = bool(drift_detected)
