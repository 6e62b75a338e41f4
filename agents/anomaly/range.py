"""Range novelty: a value beyond everything a series has shown (Numenta's spatial anomaly).

Numenta's NAB detector flags a value that leaves the series' running ``[min, max]`` by more than
:data:`TOLERANCE` of its width, whatever its sequence memory says: on real metrics a new
extreme is the plainest sign of trouble. Here the extension is graded rather than a flat "1":
it is read as a Pareto tail, ``P(extension > e) = 10**-BASE_DECADES * (e / TOLERANCE) **
-TAIL_INDEX``, so that just leaving the range is evidence of :data:`BASE_DECADES` (decades of
improbability, the unit of every member) and every doubling of the extension adds
:data:`DECADES_PER_DOUBLING`. A single new extreme then stays below an alert threshold set for
an operator's budget unless it is far out, while the likelihood members see it too if it lasts.

State per row: the running minimum and maximum.

>>> rn = RangeNovelty(rows=1)
>>> for v in [10.0, 12.0, 11.0, 14.0, 12.5]:
...     rn.learn_many([0], [v])
>>> [round(float(rn.score_many([0], [v])[0][0]), 1) for v in (13.0, 14.1, 16.0, 24.0)]
[0.0, 0.0, 12.6, 17.3]
>>> float(rn.score_many([0], [0.0])[1][0])            # below the range: pointing down
-1.0
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from agents.anomaly._jit import kernel

FloatArray = npt.NDArray[np.float64]

#: An extension of the range by less than this fraction of its width is no evidence.
TOLERANCE = 0.05
#: Evidence (decades) of an extension of exactly :data:`TOLERANCE`.
BASE_DECADES = 6.0
#: Evidence (decades) added by each doubling of the extension.
DECADES_PER_DOUBLING = 2.0
#: Half-life, in samples, of the lag with which the range before an excursion follows the range.
EXCURSION_HALFLIFE = 12.0
#: The tail index the defaults amount to: about 6.6.
TAIL_INDEX = DECADES_PER_DOUBLING / math.log10(2.0)


@kernel
def _score(low, high, base_low, base_high, rows, x, tolerance, base, per_doubling):
    n = rows.shape[0]
    evidence = np.zeros(n)
    direction = np.ones(n)
    outside = np.zeros(n)
    for k in range(n):
        r = rows[k]
        span = base_high[r] - base_low[r]
        if span > 0.0 and max(x[k] - base_high[r], base_low[r] - x[k]) > tolerance * span:
            outside[k] = 1.0
        above, below = x[k] - high[r], low[r] - x[k]
        if below > above:
            direction[k] = -1.0
        width = high[r] - low[r]
        if width > 0.0:
            extension = max(above, below) / width
            if extension > tolerance:
                evidence[k] = base + per_doubling * math.log2(extension / tolerance)
    return evidence, direction, outside


@kernel
def _learn(low, high, base_low, base_high, rows, x, alpha):
    for k in range(rows.shape[0]):
        r = rows[k]
        low[r] = min(low[r], x[k])
        high[r] = max(high[r], x[k])
        if base_high[r] < base_low[r]:  # the first value
            base_low[r], base_high[r] = low[r], high[r]
        else:  # the range before an excursion catches up with the range, with a lag
            base_low[r] += alpha * (low[r] - base_low[r])
            base_high[r] += alpha * (high[r] - base_high[r])


class RangeNovelty:
    """How far a value leaves its series' running range, as evidence in decades."""

    def __init__(self, rows: int = 1, *, tolerance: float = TOLERANCE,
                 base_decades: float = BASE_DECADES,
                 decades_per_doubling: float = DECADES_PER_DOUBLING) -> None:
        self.tolerance = tolerance
        self.base_decades = base_decades
        self.decades_per_doubling = decades_per_doubling
        self.alpha = 1.0 - 0.5 ** (1.0 / EXCURSION_HALFLIFE)
        self.low = np.full(rows, np.inf)
        self.high = np.full(rows, -np.inf)
        #: the range as it was before the current excursion (it follows the range, lagging)
        self.base_low = np.full(rows, np.inf)
        self.base_high = np.full(rows, -np.inf)

    def score_many(self, idx: npt.ArrayLike, x: npt.ArrayLike
                   ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(evidence in decades, direction: +1 above the range, -1 below, and 1 where the
        value is outside the range as it was before the current excursion) of the values
        ``x`` of rows ``idx``. Changes nothing."""
        return _score(self.low, self.high, self.base_low, self.base_high,
                      np.asarray(idx, dtype=np.int64), np.asarray(x, dtype=np.float64),
                      self.tolerance, self.base_decades, self.decades_per_doubling)

    def learn_many(self, idx: npt.ArrayLike, x: npt.ArrayLike) -> None:
        _learn(self.low, self.high, self.base_low, self.base_high,
               np.asarray(idx, dtype=np.int64), np.asarray(x, dtype=np.float64), self.alpha)
