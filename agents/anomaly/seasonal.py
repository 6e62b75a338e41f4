"""Seasonal residual: Brutlag's aberrant-behaviour detection on a daily season.

Brutlag ("Aberrant behavior detection in time series for network monitoring", LISA 2000; the
method behind RRDtool's ``HWPREDICT``) forecasts each sample with Holt-Winters exponential
smoothing and keeps, per point of the season, a smoothed absolute deviation of the forecast
errors: a sample outside ``forecast +- k * deviation`` is aberrant. Here the season is the day,
in :data:`SLOTS` time-of-day slots (a series sampled every 10 s and one sampled hourly share the
same slots), the forecast is a level plus the slot's seasonal offset (no trend term: over a day,
a trend is the level's to follow), and the raw score grades the error against the band: 0
within ``BAND[0]`` deviations, rising linearly to 1 at ``BAND[1]``. A slot not seen yet
forecasts the level alone and uses the series' overall deviation.

The smoothing constants are per :data:`STEP_S` of data: a series sampled every 10 s gives each
sample 1/30 of a 5-minute sample's weight (``1 - (1 - a) ** (dt / STEP_S)``), so that its level
and season have the same memory in time as a series sampled every 5 minutes; samples further
apart than :data:`STEP_S` weigh as one step (a day's season is still learned over days from an
hourly series).

The raw score feeds :class:`~agents.anomaly.likelihood.AnomalyLikelihood`. State per row: the
level, the overall deviation, the time of the last sample, and per slot an offset and a
deviation (``nan`` until seen).

>>> import math, random
>>> rng, sr = random.Random(0), SeasonalResidual(rows=1)
>>> def daily(t):                                         # a daily curve, noisy
...     return 50 + 30 * math.sin(2 * math.pi * t / 86400) + rng.gauss(0, 2)
>>> t = 14 * 86400.0 + 6 * 3600.0                        # in two weeks, at 06:00 (the peak)
>>> for i in range(int(t // 300)):                       # until then, at a 5-min step
...     sr.learn_many([0], [300.0 * i], [daily(300.0 * i)])
>>> [round(float(sr.score_many([0], [t], [v]).raw[0]), 2) for v in (79.0, 81.0)]
[0.0, 0.0]
>>> r = sr.score_many([0], [t], [20.0])                   # the night's value at the peak
>>> float(r.raw[0]), float(r.direction[0])
(1.0, -1.0)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from agents.anomaly._jit import kernel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_S = 86400.0
#: Time-of-day slots of the season (30 minutes each).
SLOTS = 48
#: Smoothing of the level, the seasonal offsets and the per-slot deviations.
ALPHA, GAMMA, DELTA = 0.05, 0.1, 0.1
#: Smoothing of the series' overall deviation (used for slots not seen yet, and as a floor).
OVERALL_DELTA = 0.02
#: The sampling interval the smoothing constants are for, seconds.
STEP_S = 300.0
#: The deviation is at least this fraction of the series' range (its resolution): a series
#: that sits at exactly 0 does not make every blip an aberration.
RESOLUTION = 0.01
#: The band, in deviations: raw score 0 within the first, 1 beyond the second.
BAND = (2.0, 6.0)


class SeasonalScore(NamedTuple):
    raw: FloatArray
    #: +1 above the forecast, -1 below
    direction: FloatArray
    #: value - forecast
    residual: FloatArray
    slot: IntArray


@kernel
def _score(level, deviation, offset, slot_deviation, started, low, high, rows, t, x,
           band_lo, band_hi, resolution):
    n = rows.shape[0]
    slots = offset.shape[1]
    raw = np.zeros(n)
    direction = np.ones(n)
    residual = np.zeros(n)
    slot = np.zeros(n, dtype=np.int64)
    for k in range(n):
        r = rows[k]
        s = int((t[k] % 86400.0) / 86400.0 * slots) % slots
        slot[k] = s
        seen = not math.isnan(offset[r, s])
        forecast = level[r] + (offset[r, s] if seen else 0.0)
        e = x[k] - forecast
        residual[k] = e
        if e < 0.0:
            direction[k] = -1.0
        if not started[r]:
            continue
        overall = deviation[r]
        d = max(slot_deviation[r, s] if seen else overall, 0.5 * overall)
        d = max(d, resolution * (high[r] - low[r]), 1e-9 * abs(level[r]) + 1e-12)
        raw[k] = min(1.0, max(0.0, (abs(e) / d - band_lo) / (band_hi - band_lo)))
    return raw, direction, residual, slot


@kernel
def _learn(level, deviation, offset, slot_deviation, started, last_t, low, high, rows, t, x,
           residual, slot, alpha, gamma, delta, overall_delta, step_s):
    for k in range(rows.shape[0]):
        r, s, v = rows[k], slot[k], x[k]
        low[r] = min(low[r], v)
        high[r] = max(high[r], v)
        if not started[r]:  # a row's first value: the level, nothing else
            level[r] = v
            started[r] = True
            last_t[r] = t[k]
            continue
        # the weights are per step_s of data: closer samples share one step's weight
        steps = min(max(t[k] - last_t[r], 0.0), step_s) / step_s
        last_t[r] = max(last_t[r], t[k])
        alpha_k = 1.0 - (1.0 - alpha) ** steps
        gamma_k = 1.0 - (1.0 - gamma) ** steps
        delta_k = 1.0 - (1.0 - delta) ** steps
        overall_k = 1.0 - (1.0 - overall_delta) ** steps
        error = abs(residual[k])
        if math.isnan(offset[r, s]):
            level[r] += alpha_k * (v - level[r])
            offset[r, s] = v - level[r]
            slot_deviation[r, s] = error
        else:
            level[r] += alpha_k * (v - offset[r, s] - level[r])
            offset[r, s] += gamma_k * (v - level[r] - offset[r, s])
            slot_deviation[r, s] += delta_k * (error - slot_deviation[r, s])
        deviation[r] += overall_k * (error - deviation[r])


class SeasonalResidual:
    """Holt-Winters level and time-of-day season with Brutlag's deviation band."""

    def __init__(self, rows: int = 1, *, slots: int = SLOTS, alpha: float = ALPHA,
                 gamma: float = GAMMA, delta: float = DELTA,
                 overall_delta: float = OVERALL_DELTA,
                 band: tuple[float, float] = BAND, step_s: float = STEP_S,
                 resolution: float = RESOLUTION) -> None:
        self.alpha, self.gamma, self.delta = alpha, gamma, delta
        self.resolution = resolution
        self.step_s = step_s
        self.overall_delta = overall_delta
        self.band = band
        self.level = np.zeros(rows)
        self.deviation = np.zeros(rows)
        self.offset = np.full((rows, slots), np.nan)
        self.slot_deviation = np.full((rows, slots), np.nan)
        self.started = np.zeros(rows, dtype=np.bool_)
        self.last_t = np.zeros(rows)
        self.low = np.full(rows, np.inf)
        self.high = np.full(rows, -np.inf)

    def score_many(self, idx: npt.ArrayLike, t: npt.ArrayLike, x: npt.ArrayLike
                   ) -> SeasonalScore:
        """Raw score in [0, 1] of the values ``x`` at times ``t``. Changes nothing."""
        return SeasonalScore(*_score(
            self.level, self.deviation, self.offset, self.slot_deviation, self.started,
            self.low, self.high, np.asarray(idx, dtype=np.int64),
            np.asarray(t, dtype=np.float64), np.asarray(x, dtype=np.float64), *self.band,
            self.resolution))

    def learn_many(self, idx: npt.ArrayLike, t: npt.ArrayLike, x: npt.ArrayLike,
                   scored: SeasonalScore | None = None) -> None:
        """Learn the values ``x`` at times ``t`` (``scored``: their :meth:`score_many`)."""
        rows = np.asarray(idx, dtype=np.int64)
        t = np.asarray(t, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        if scored is None:
            scored = self.score_many(rows, t, x)
        _learn(self.level, self.deviation, self.offset, self.slot_deviation, self.started,
               self.last_t, self.low, self.high, rows, t, x, scored.residual, scored.slot,
               self.alpha, self.gamma, self.delta, self.overall_delta, self.step_s)
