"""Level shift: a fast moving average leaving a slow one, in units of the series' spread.

The two-moving-average test behind control charts and trading rules: a sustained change of level
moves an exponentially weighted mean of the last few samples (span :data:`FAST_SPAN`) away from a
slow one (half-life :data:`SLOW_HALFLIFE` samples) by several standard deviations of the series
around the slow mean, while a single spike moves it by a fraction of the spike. The raw score is
0 within :data:`BAND` [0] deviations and rises linearly to 1 at :data:`BAND` [1]. The slow mean
and deviation are also the series' *baseline*: what alerts explain values against, and how the
half-space trees standardize a VM's metrics.

State per row: the fast mean, the slow mean and variance, and a count.

>>> import numpy as np
>>> ls = LevelShift(rows=1)
>>> rng = np.random.default_rng(1)
>>> for v in 100 + rng.normal(0, 5, 500):
...     ls.learn_many([0], [v])
>>> float(ls.score_many([0], [104.0]).raw[0])            # noise
0.0
>>> for v in 160 + rng.normal(0, 5, 6):                   # the level jumps by 12 deviations
...     r = ls.score_many([0], [v]); ls.learn_many([0], [v], r)
>>> round(float(r.raw[0]), 2), float(r.direction[0])
(0.64, 1.0)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from agents.anomaly._jit import kernel

FloatArray = npt.NDArray[np.float64]

#: Span (in samples) of the fast mean: weight ``2 / (span + 1)``.
FAST_SPAN = 8.0
#: Half-life (in samples) of the slow mean and variance.
SLOW_HALFLIFE = 400.0
#: The band, in deviations: raw score 0 within the first, 1 beyond the second.
BAND = (3.0, 8.0)
#: Samples before any raw score (the slow statistics need a few).
MIN_SAMPLES = 50


class LevelScore(NamedTuple):
    raw: FloatArray
    #: +1 when the fast mean is above the slow one, -1 below
    direction: FloatArray
    #: the fast mean with this value learned
    fast: FloatArray


@kernel
def _score(fast, slow, variance, count, rows, x, band_lo, band_hi, min_samples,
           fast_alpha):
    n = rows.shape[0]
    raw = np.zeros(n)
    direction = np.ones(n)
    new_fast = np.zeros(n)
    for k in range(n):
        r = rows[k]
        f = fast[r] + fast_alpha * (x[k] - fast[r]) if count[r] > 0 else x[k]
        new_fast[k] = f
        gap = f - slow[r]
        if gap < 0.0:
            direction[k] = -1.0
        sd = math.sqrt(max(variance[r], 0.0))
        if count[r] > min_samples and sd > 0.0:
            raw[k] = min(1.0, max(0.0, (abs(gap) / sd - band_lo) / (band_hi - band_lo)))
    return raw, direction, new_fast


@kernel
def _learn(fast, slow, variance, count, rows, x, new_fast, slow_alpha):
    for k in range(rows.shape[0]):
        r = rows[k]
        fast[r] = new_fast[k]
        # the first value sets the slow mean; then max(alpha, 1/n) weights, as a running mean
        a = max(slow_alpha, 1.0 / (count[r] + 1.0))
        delta = x[k] - slow[r]
        slow[r] += a * delta
        variance[r] = (1.0 - a) * (variance[r] + a * delta * delta)
        count[r] += 1


class LevelShift:
    """Fast against slow exponentially weighted means (see the module docstring)."""

    def __init__(self, rows: int = 1, *, fast_span: float = FAST_SPAN,
                 slow_halflife: float = SLOW_HALFLIFE, band: tuple[float, float] = BAND,
                 min_samples: int = MIN_SAMPLES) -> None:
        self.fast_alpha = 2.0 / (fast_span + 1.0)
        self.slow_alpha = 1.0 - 0.5 ** (1.0 / slow_halflife)
        self.band = band
        self.min_samples = min_samples
        self.fast = np.zeros(rows)
        self.slow = np.zeros(rows)
        self.variance = np.zeros(rows)
        self.count = np.zeros(rows, dtype=np.int64)

    def baseline(self, idx: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(slow mean, spread) of rows ``idx``; the spread is the slow standard deviation,
        floored at 1e-3 of the mean's size (and 1e-9) so that a flat series still has one."""
        rows = np.asarray(idx, dtype=np.int64)
        mean = self.slow[rows]
        spread = np.maximum(np.sqrt(np.maximum(self.variance[rows], 0.0)), 1e-3 * np.abs(mean))
        return mean, np.maximum(spread, 1e-9)

    def score_many(self, idx: npt.ArrayLike, x: npt.ArrayLike) -> LevelScore:
        """Raw score in [0, 1] of the values ``x``. Changes nothing."""
        return LevelScore(*_score(self.fast, self.slow, self.variance, self.count,
                                  np.asarray(idx, dtype=np.int64),
                                  np.asarray(x, dtype=np.float64), self.band[0], self.band[1],
                                  self.min_samples, self.fast_alpha))

    def learn_many(self, idx: npt.ArrayLike, x: npt.ArrayLike,
                   scored: LevelScore | None = None) -> None:
        rows = np.asarray(idx, dtype=np.int64)
        x = np.asarray(x, dtype=np.float64)
        if scored is None:
            scored = self.score_many(rows, x)
        _learn(self.fast, self.slow, self.variance, self.count, rows, x, scored.fast,
               self.slow_alpha)
