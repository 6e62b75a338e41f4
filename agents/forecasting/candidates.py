"""The cheap online point forecasters a series forecaster chooses from.

Each candidate forecasts a flat path (the same value at every horizon) except the three
*timed* ones. Under absolute error (what WAPE measures) the best flat forecast is a median, so
rolling medians of several lengths sit beside the last value and exponential averages; online
selection (:class:`~agents.forecasting.series.SeriesForecaster`) picks, per series and
horizon, the one that has erred least lately. Their arithmetic is compiled
(:mod:`agents.forecasting.kernels`); this module names them and holds the two numpy steps
that run about hourly per series.

- ``last``, ``ewma_<alpha>``: the newest value; exponential averages.
- ``median_<n>``: the median of the last ``n`` samples; ``median_<n>c``: of the last ``n``
  cells of the periodic candidate's time grid (8 h, 24 h at 5-minute cells).
- ``daily``: the learned level of the target's half-hour of the day (exponential smoothing
  per half-hour, 48 levels whatever the sampling rate).
- ``periodic``: seasonal naive at a short period found by autocorrelation (a job every 40
  minutes, a batch every 3 hours, ...): the median of the values one, two and three periods
  before the target time, on a 5-minute grid of the last 288 cells.
- ``holt_winters``: additive Holt-Winters with a daily season on hourly means, River's
  ``time_series.HoltWinters`` recurrences step for step (tested against River), forecasting
  nothing until a full season has been learned.

>>> values = np.array([10.0 if i % 8 == 0 else 1.0 for i in range(200)], dtype=np.float32)
>>> estimate_period(values)
8
"""

from __future__ import annotations

import numpy as np

#: Rolling-median lengths, in samples.
MEDIAN_LENGTHS = (3, 6, 12, 24, 48)
#: Long rolling-median lengths, in cells of the periodic candidate's time grid.
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
#: The autocorrelation a period needs.
MIN_ACF = 0.3


def autocorrelation(values: np.ndarray) -> np.ndarray:
    """Autocorrelation at lags 1 .. len // 3 (index 0 is lag 1); zeros for a flat series."""
    x = values - values.mean()
    denom = float(x @ x)
    n = len(x)
    if denom <= 0.0:
        return np.zeros(n // 3)
    return np.correlate(x, x, mode="full")[n:n + n // 3] / denom


def estimate_period(values: np.ndarray) -> int:
    """The period of ``values`` in cells: the lag (>= 2) of the highest local maximum of the
    autocorrelation above :data:`MIN_ACF`, or 0 for none."""
    acf = autocorrelation(values).tolist()  # plain floats: faster to compare
    best, best_acf = 0, MIN_ACF
    for lag in range(2, len(acf)):
        a = acf[lag - 1]
        if a > best_acf and a >= acf[lag - 2] and (lag == len(acf) or a >= acf[lag]):
            best, best_acf = lag, a
    return best


def long_medians(values: np.ndarray) -> list[float]:
    """The medians of the last :data:`LONG_MEDIAN_CELLS` cells (fewer while filling)."""
    return [float(np.median(values[-n:])) for n in LONG_MEDIAN_CELLS]
