"""Many series' forecasters as the rows of three arrays, learned a batch of rows at a time.

A :class:`FleetForecaster` holds one row per series (a VM's metric) in the layout of
:mod:`agents.forecasting.layout`. :meth:`~FleetForecaster.learn_many` scores the forecasts
that are due and learns one sample in each of a batch of distinct rows, in compiled code
(:mod:`agents.forecasting.kernels`), with the two rare steps numpy does best run here in
between. :meth:`~FleetForecaster.forecast_many` gives each row's forecasts with intervals.
The per-series API (:class:`~agents.forecasting.series.SeriesForecaster`) and the per-VM one
(:class:`~agents.forecasting.vm.VMForecaster`) are rows of one of these.

>>> import numpy as np
>>> fleet = FleetForecaster((300.0, 3600.0), rows=2)
>>> rows = np.array([0, 1])
>>> for i in range(300):
...     res = fleet.learn_many(rows, np.full(2, 300.0 * i), np.array([10.0, 20.0]))
>>> out, chosen = fleet.forecast_many(rows, np.full(2, 300.0 * 299))
>>> out.shape, [round(float(p)) for p in out[:, 0, 0]]    # (rows, horizons, point + band)
((2, 2, 5), [10, 20])
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from agents.forecasting import kernels
from agents.forecasting.candidates import estimate_period, long_medians
from agents.forecasting.layout import (
    D_HW_FIRST,
    D_HW_LEVEL,
    D_HW_SEASON,
    D_HW_TREND,
    D_LAST_GRID,
    D_LONG,
    D_PH,
    I_DRIFTS,
    I_HW_FIRST_LEN,
    I_HW_HOUR,
    I_HW_POS,
    I_HW_READY,
    I_LAST_CELL,
    I_PENDING,
    I_PERIOD,
    I_PRING_LEN,
    I_TODO,
    KC,
    MODELS,
    PERIODIC_CELLS,
    S_LEVELS,
    S_PRING,
    SEASON,
    TODO_HW_START,
    TODO_PERIODIC,
    Offsets,
)
from agents.forecasting.page_hinkley import fresh as fresh_page_hinkley

#: The cell of the periodic candidate's time grid, in seconds.
CELL_S = 300.0

Band = tuple[float, float, float, float]
Rows = npt.NDArray[np.int64]


class FleetForecaster:
    """Forecasts of ``rows`` series at fixed horizons, with 80 % and 90 % intervals.

    Parameters
    ----------
    horizons_s
        The horizons, in seconds.
    rows
        How many series.
    grid_s
        How often (event time) forecasts are remembered for scoring; bounds the state
        whatever the sampling rate. Defaults to the shortest horizon.
    """

    def __init__(self, horizons_s: Sequence[float] = (300.0, 900.0, 3600.0), rows: int = 1,
                 grid_s: float | None = None) -> None:
        self.horizons_s = tuple(float(h) for h in horizons_s)
        self.grid_s = float(grid_s or min(self.horizons_s))
        self.offsets = Offsets.of(len(self.horizons_s), self.grid_s, max(self.horizons_s))
        self._o = self.offsets.as_tuple()
        self._hs = np.array(self.horizons_s)
        self.f32, self.f64, self.i64 = self.blank(rows)

    def blank(self, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``rows`` rows of series that learned nothing yet."""
        o = self.offsets
        f32 = np.zeros((rows, o.f32), dtype=np.float32)
        f32[:, S_LEVELS:S_PRING] = np.nan  # no daily level learned
        f32[:, o.weights:o.pending] = 1.0 / KC
        f64 = np.zeros((rows, o.f64))
        f64[:, D_LONG:D_LONG + 2] = np.nan
        f64[:, D_LAST_GRID] = -math.inf
        f64[:, D_PH:D_PH + len(fresh_page_hinkley())] = fresh_page_hinkley()
        i64 = np.zeros((rows, o.i64), dtype=np.int64)
        i64[:, I_LAST_CELL] = -1
        i64[:, I_HW_HOUR] = -1
        return f32, f64, i64

    @property
    def rows(self) -> int:
        return int(self.f32.shape[0])

    # -- River verbs, a batch of rows at a time ------------------------------------------
    def learn_many(self, rows: Rows, t: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Score the forecasts whose target time has come, then learn ``y[k]`` at ``t[k]`` in
        row ``rows[k]`` (distinct rows, times in order per row). Per row: (1.0 if the errors
        drifted, |error| and |actual| of the shortest horizon's forecast scored now (NaN:
        none), the model chosen before a drift (-1: none))."""
        res = np.empty((len(rows), 4))
        f32, f64, i64 = self.f32, self.f64, self.i64
        kernels.learn_rows(f32, f64, i64, rows, t, y, self._o, self._hs, self.grid_s, res)
        todo = i64[rows, I_TODO]
        if todo.any():
            for r in rows[todo != 0].tolist():
                self._python_steps(r)
        kernels.grid_rows(f32, f64, i64, rows, t, self._o, self._hs, self.grid_s)
        return res

    def forecast_many(self, rows: Rows, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(out, chosen): ``out[k, h]`` is (point, lower 80, upper 80, lower 90, upper 90) of
        row ``rows[k]`` from ``t[k]`` at horizon ``h``; ``chosen[k, h]`` the model used
        (index in :data:`~agents.forecasting.layout.MODELS`). Changes nothing."""
        n_h = len(self.horizons_s)
        out = np.empty((len(rows), n_h, 5))
        chosen = np.empty((len(rows), n_h), dtype=np.int64)
        kernels.forecast_rows(self.f32, self.f64, self.i64, rows, t, self._o, self._hs, out,
                              chosen)
        return out, chosen

    # -- what else a row tells ------------------------------------------------------------
    def chosen_name(self, row: int, h: int = 0) -> str:
        """The model used at horizon index ``h`` now."""
        return MODELS[kernels.choice(self.f32, self.f64, row, self._o, h)]

    def recent_cells(self, row: int, window_s: float) -> list[float]:
        """The recent values on the periodic candidate's time grid (the newest sample of each
        cell), over the last ``window_s``."""
        n = max(1, int(window_s // CELL_S))
        filled = int(self.i64[row, I_PRING_LEN])
        return self.f32[row, S_PRING + max(0, filled - n):S_PRING + filled].tolist()

    def period(self, row: int) -> int:
        """The periodic candidate's period, in cells (0: none found)."""
        return int(self.i64[row, I_PERIOD])

    def pending(self, row: int) -> int:
        """Forecasts remembered, awaiting their target time."""
        return int(self.i64[row, I_PENDING])

    def drifts_total(self, row: int) -> int:
        return int(self.i64[row, I_DRIFTS])

    # -- the steps left to Python -----------------------------------------------------------
    def _python_steps(self, r: int) -> None:
        f64, i64 = self.f64, self.i64
        todo = int(i64[r, I_TODO])
        i64[r, I_TODO] = 0
        if todo & TODO_PERIODIC:  # hourly: numpy's median and autocorrelation
            values = self.f32[r, S_PRING:S_PRING + int(i64[r, I_PRING_LEN])]
            f64[r, D_LONG:D_LONG + 2] = long_medians(values)
            if len(values) >= PERIODIC_CELLS // 2:
                i64[r, I_PERIOD] = estimate_period(values)
        if todo & TODO_HW_START:  # once: the season starts from the first day's means
            first = f64[r, D_HW_FIRST:D_HW_FIRST + SEASON].tolist()
            level = statistics.mean(first)
            f64[r, D_HW_LEVEL:D_HW_LEVEL + 2] = level
            f64[r, D_HW_TREND] = 0.0
            f64[r, D_HW_TREND + 1] = statistics.mean(
                [b - a for a, b in itertools.pairwise(first)])
            f64[r, D_HW_SEASON:D_HW_SEASON + SEASON] = [v - level for v in first]
            i64[r, I_HW_READY] = 1
            i64[r, I_HW_FIRST_LEN] = 0
            i64[r, I_HW_POS] = 0
            kernels.hw_path(f64, i64, r)


def bands(out: np.ndarray) -> list[tuple[float, Band]]:
    """One row of :meth:`FleetForecaster.forecast_many` as (point, (lower 80, upper 80,
    lower 90, upper 90)) per horizon."""
    return [(p, (a, b, c, d)) for p, a, b, c, d in out.tolist()]


class ForecasterPool:
    """Rows for many VMs' forecasters in one :class:`FleetForecaster`, grown by doubling.

    A VM's :class:`~agents.forecasting.vm.VMForecaster` attached to the pool keeps its rows
    here, so that a batch of many VMs' samples is learned in one
    :meth:`~FleetForecaster.learn_many`. The fleet object stays the same as it grows (its
    arrays are replaced), so whoever holds it keeps reading the right rows.

    >>> pool = ForecasterPool((300.0,), capacity=2)
    >>> a = pool.acquire(2); b = pool.acquire(2)
    >>> a.tolist(), b.tolist(), pool.fleet.rows
    ([0, 1], [2, 3], 4)
    """

    def __init__(self, horizons_s: Sequence[float] = (300.0, 900.0, 3600.0),
                 capacity: int = 256) -> None:
        self.fleet = FleetForecaster(horizons_s, rows=max(1, capacity))
        self._free = list(range(self.fleet.rows - 1, -1, -1))

    def __len__(self) -> int:
        """Rows in use."""
        return self.fleet.rows - len(self._free)

    def acquire(self, n: int) -> Rows:
        """``n`` free rows, blank."""
        while len(self._free) < n:
            self._grow()
        return np.array([self._free.pop() for _ in range(n)], dtype=np.int64)

    def release(self, rows: Rows) -> None:
        fleet = self.fleet
        blank = fleet.blank(len(rows))
        fleet.f32[rows], fleet.f64[rows], fleet.i64[rows] = blank
        self._free.extend(reversed(rows.tolist()))

    def _grow(self) -> None:
        fleet = self.fleet
        cap = fleet.rows
        more = fleet.blank(cap)
        fleet.f32, fleet.f64, fleet.i64 = (np.concatenate([old, new]) for old, new in
                                           zip((fleet.f32, fleet.f64, fleet.i64), more,
                                               strict=True))
        self._free = list(range(2 * cap - 1, cap - 1, -1)) + self._free


def warm_up() -> float:
    """Compile every forecaster kernel now, or load it from numba's on-disk cache: the
    seconds it took (about 20 s on two cores on a first start, once per source change).

    >>> warm_up() >= 0.0
    True
    """
    import time

    from agents.forecasting.series import SeriesForecaster

    start = time.perf_counter()
    fc = SeriesForecaster()  # one series on its own, as a single-series backtest steps it
    pool = ForecasterPool(fc.horizons_s, capacity=2)  # many at once, as a worker does
    rows = pool.acquire(2)
    for step in range(30):  # past the first hour: Holt-Winters and the periodic refresh
        t = step * 300.0 * 24
        fc.learn_one(t, 1.0)
        fc.chosen_name(0)
        pool.fleet.learn_many(rows, np.full(2, t), np.ones(2))
        pool.fleet.forecast_many(rows, np.full(2, t))
    return time.perf_counter() - start
