"""Where each part of a series forecaster's state lives in its three rows of numbers.

A series' whole forecaster (:mod:`agents.forecasting.kernels`) is one row of each of three
arrays: single precision (recent values, the daily profile, errors, combination weights and
the pending forecasts, all of which were single precision before), double precision (smoothed
values, Holt-Winters, interval quantiles and widths, drift statistics) and integers (counts,
positions, flags). The offsets below name the fixed parts; the parts that grow with the
number of horizons ``H`` and the pending capacity follow them, at :class:`Offsets`.

>>> o = Offsets.of(horizons=3, grid_s=300.0, longest_s=3600.0)
>>> o.capacity, o.width    # pending rows kept at most, and one row's values
(15, 26)
>>> o.f32 == o.pending + o.capacity * o.width
True
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.forecasting.candidates import (
    CANDIDATES,
    EWMA_ALPHAS,
    LONG_MEDIAN_CELLS,
    MEDIAN_LENGTHS,
    N_FLAT,
)
from agents.forecasting.page_hinkley import WIDTH as PH_WIDTH

#: What selection chooses from: every candidate, then their learned combination.
MODELS: tuple[str, ...] = (*CANDIDATES, "combo")
#: (lower, upper) quantiles of the 80 % and 90 % intervals.
QUANTILES = (0.10, 0.90, 0.05, 0.95)

K = len(MODELS)
KC = len(CANDIDATES)
NF = N_FLAT
#: Per horizon, a pending row holds the timed candidates', the combination's and the chosen
#: forecasts, after the flat candidates' (the same at every horizon).
TIMED = K - NF + 1
DEFAULT = CANDIDATES.index("median_6")  # chosen until a horizon has been scored a few times

RING = max(MEDIAN_LENGTHS)  # recent values (single precision)
SLOTS = 48  # daily profile: half-hours
PERIODIC_CELLS = 288
SEASON = 24  # Holt-Winters: hours
HW_PATH = 3  # hours ahead the Holt-Winters path reaches

# -- single precision --------------------------------------------------------------------
S_RING = 0
S_LEVELS = S_RING + RING
S_PRING = S_LEVELS + SLOTS
S_FIXED = S_PRING + PERIODIC_CELLS

# -- double precision --------------------------------------------------------------------
D_EWMA = 0
D_LONG = D_EWMA + len(EWMA_ALPHAS)
D_HW_TOTAL = D_LONG + len(LONG_MEDIAN_CELLS)
D_HW_LEVEL = D_HW_TOTAL + 1  # previous, current
D_HW_TREND = D_HW_LEVEL + 2  # previous, current
D_HW_SEASON = D_HW_TREND + 2
D_HW_PATH = D_HW_SEASON + SEASON
D_HW_FIRST = D_HW_PATH + HW_PATH  # the first day's hourly means
D_LAST_GRID = D_HW_FIRST + SEASON
D_NOW = D_LAST_GRID + 1
D_PH = D_NOW + 1  # Page-Hinkley (agents.forecasting.page_hinkley) on the shortest horizon
D_FIXED = D_PH + PH_WIDTH

# -- integers ----------------------------------------------------------------------------
I_N = 0  # samples learned
I_RING_LEN = 1
I_PRING_LEN = 2
I_LAST_CELL = 3
I_PERIOD = 4
I_SINCE = 5
I_HW_HOUR = 6
I_HW_COUNT = 7
I_HW_FIRST_LEN = 8
I_HW_READY = 9  # the season has started
I_HW_POS = 10
I_HW_PATH_LEN = 11
I_PENDING = 12  # pending rows
I_DRIFTS = 13  # drifts detected, in all
I_TODO = 14  # work the kernel leaves to Python: TODO_PERIODIC | TODO_HW_START
I_FIXED = 15

TODO_PERIODIC = 1  # refresh the periodic candidate's long medians and period
TODO_HW_START = 2  # start Holt-Winters' season from the first day


@dataclass(frozen=True)
class Offsets:
    """The offsets that depend on the number of horizons and the pending capacity."""

    horizons: int
    capacity: int
    width: int  # one pending row's values
    errors: int  # single: EW mean |error|, [horizon][model]
    weights: int  # single: combination weights, [horizon][candidate]
    pending: int  # single: pending rows' values
    f32: int
    scored: int  # double: EW weight behind each horizon's errors
    quantiles: int  # double: [horizon][quantile]
    scale: int  # double: EW mean |residual| of the chosen forecast, per horizon
    widen: int  # double: log width factor, [horizon][80 %, 90 %]
    made_at: int  # double: when each pending row was made
    f64: int
    mask: int  # integers: the horizons each pending row has been scored at (a bit each)
    i64: int

    @classmethod
    def of(cls, horizons: int, grid_s: float, longest_s: float) -> Offsets:
        # Rows are made at least grid_s apart and kept for longest_s + grid_s.
        capacity = int((longest_s + grid_s) // grid_s) + 2
        width = NF + TIMED * horizons
        errors = S_FIXED
        weights = errors + K * horizons
        pending = weights + KC * horizons
        scored = D_FIXED
        quantiles = scored + horizons
        scale = quantiles + len(QUANTILES) * horizons
        widen = scale + horizons
        made_at = widen + 2 * horizons
        return cls(horizons, capacity, width, errors, weights, pending,
                   pending + capacity * width, scored, quantiles, scale, widen, made_at,
                   made_at + capacity, I_FIXED, I_FIXED + capacity)

    def as_tuple(self) -> tuple[int, ...]:
        """What the kernels take (:data:`agents.forecasting.kernels` reads it by position)."""
        return (self.horizons, self.capacity, self.width, self.errors, self.weights,
                self.pending, self.scored, self.quantiles, self.scale, self.widen,
                self.made_at, self.mask)
