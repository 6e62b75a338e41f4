"""Cheap online point forecasters, all fed from one small ring of recent values.

Each candidate forecasts a flat path (the same value at every horizon) except the daily
profile, which forecasts the learned value at the target's time of day. Under absolute error
(what WAPE measures) the best flat forecast is a median, so rolling medians of several lengths
sit beside the last value and exponential averages; online selection
(:class:`~agents.forecasting.series.SeriesForecaster`) picks, per series and horizon, the one
that has erred least lately.

>>> ring = Ring(8)
>>> for y in [1.0, 9.0, 2.0, 3.0]:
...     ring.append(y)
>>> median_of_last(ring, 3), median_of_last(ring, 10)
(3.0, 2.5)
"""

from __future__ import annotations

import itertools
import statistics
from array import array
from collections.abc import Sequence
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
