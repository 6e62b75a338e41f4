"""Sustained growth: the last hours' level well above the last days', in robust spreads.

A leak shows as a ramp: it sets no new extreme for hours and moves no faster than a daily rhythm
does, sample by sample drowned in noise, but after a few hours the series' recent level stands
far above where it stood over the last days. This member is the two-moving-average test of
:mod:`~agents.anomaly.level` on a slower clock and with a robust spread: an exponentially
weighted mean with a half-life of :data:`FAST_HALFLIFE_S` against one of :data:`SLOW_HALFLIFE_S`,
the gap measured in spreads (the exponentially weighted mean absolute deviation from the slow
mean, times ``sqrt(pi / 2)``: a few huge spikes in the past do not hide a ramp). The half-lives
are in seconds of the series' own clock (each sample weighs as the time since the previous one,
up to :data:`MAX_STEP_S`), so that a VM reporting every 10 s and one reporting every 5 minutes
have the same memory. Upward only: the raw score is 0 within ``BAND[0]`` spreads and rises
linearly to 1 at ``BAND[1]``.

The raw score feeds :class:`~agents.anomaly.likelihood.AnomalyLikelihood`. State per row: the
two means, the deviation, the time of the last sample and a count.

>>> import random
>>> rng, tg = random.Random(2), TrendGrowth(rows=1)
>>> for i in range(2000):                                 # a week of noise, every 5 minutes
...     tg.learn_many([0], [300.0 * i], [100.0 + rng.gauss(0, 5)])
>>> float(tg.score_many([0], [600000.0], [104.0])[0])
0.0
>>> for i in range(2000, 2144):                           # then 12 hours of a steady climb
...     v = 100.0 + 1.0 * (i - 2000) + rng.gauss(0, 5)
...     r = tg.score_many([0], [300.0 * i], [v]); tg.learn_many([0], [300.0 * i], [v])
>>> round(float(r[0]), 2)                                 # far out, for hours: the likelihood
0.67
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from agents.anomaly._jit import kernel

FloatArray = npt.NDArray[np.float64]

#: Half-life of the recent level, seconds.
FAST_HALFLIFE_S = 3 * 3600.0
#: Half-life of the long-run level and of the spread around it, seconds.
SLOW_HALFLIFE_S = 2 * 86400.0
#: A sample weighs as the time since the previous one, up to this (seconds).
MAX_STEP_S = 3600.0
#: The band, in spreads: raw score 0 within the first, 1 beyond the second.
BAND = (2.0, 6.0)
#: Samples before any raw score.
MIN_SAMPLES = 50
_SPREAD_PER_DEVIATION = math.sqrt(math.pi / 2.0)


@kernel
def _weight(halflife_s, dt):
    return 1.0 - 0.5 ** (min(max(dt, 0.0), MAX_STEP_S) / halflife_s)


@kernel
def _score(fast, slow, deviation, last_t, count, rows, t, x, fast_halflife_s,
           band_lo, band_hi, min_samples):
    n = rows.shape[0]
    raw = np.zeros(n)
    for k in range(n):
        r = rows[k]
        if count[r] <= min_samples:
            continue
        f = fast[r] + _weight(fast_halflife_s, t[k] - last_t[r]) * (x[k] - fast[r])
        spread = deviation[r] * _SPREAD_PER_DEVIATION
        if spread > 0.0:
            gap = (f - slow[r]) / spread
            raw[k] = min(1.0, max(0.0, (gap - band_lo) / (band_hi - band_lo)))
    return raw


@kernel
def _learn(fast, slow, deviation, last_t, count, rows, t, x, fast_halflife_s,
           slow_halflife_s):
    for k in range(rows.shape[0]):
        r = rows[k]
        if count[r] == 0:
            fast[r] = slow[r] = x[k]
        else:
            dt = t[k] - last_t[r]
            fast[r] += _weight(fast_halflife_s, dt) * (x[k] - fast[r])
            # the slow statistics start as running means, then forget
            a = max(_weight(slow_halflife_s, dt), 1.0 / (count[r] + 1.0))
            deviation[r] += a * (abs(x[k] - slow[r]) - deviation[r])
            slow[r] += a * (x[k] - slow[r])
        last_t[r] = max(last_t[r], t[k])
        count[r] += 1


class TrendGrowth:
    """Recent against long-run level, in robust spreads, growth only (see the module
    docstring)."""

    def __init__(self, rows: int = 1, *, fast_halflife_s: float = FAST_HALFLIFE_S,
                 slow_halflife_s: float = SLOW_HALFLIFE_S, band: tuple[float, float] = BAND,
                 min_samples: int = MIN_SAMPLES) -> None:
        self.fast_halflife_s = fast_halflife_s
        self.slow_halflife_s = slow_halflife_s
        self.band = band
        self.min_samples = min_samples
        self.fast = np.zeros(rows)
        self.slow = np.zeros(rows)
        self.deviation = np.zeros(rows)
        self.last_t = np.zeros(rows)
        self.count = np.zeros(rows, dtype=np.int64)

    def score_many(self, idx: npt.ArrayLike, t: npt.ArrayLike, x: npt.ArrayLike) -> FloatArray:
        """Raw score in [0, 1] of the values ``x`` at times ``t`` (growth only). Changes
        nothing."""
        return _score(self.fast, self.slow, self.deviation, self.last_t,
                      self.count, np.asarray(idx, dtype=np.int64),
                      np.asarray(t, dtype=np.float64), np.asarray(x, dtype=np.float64),
                      self.fast_halflife_s, self.band[0], self.band[1], self.min_samples)

    def learn_many(self, idx: npt.ArrayLike, t: npt.ArrayLike, x: npt.ArrayLike) -> None:
        _learn(self.fast, self.slow, self.deviation, self.last_t, self.count,
               np.asarray(idx, dtype=np.int64), np.asarray(t, dtype=np.float64),
               np.asarray(x, dtype=np.float64), self.fast_halflife_s, self.slow_halflife_s)
