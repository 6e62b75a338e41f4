"""Analog prediction: what followed the most similar recent contexts, and how wrong it was.

Lorenz's *method of analogues*, as a sequence memory: the last :data:`CONTEXT` values are
compared with every earlier stretch of :data:`CONTEXT` values in the series' recent history
(:data:`HISTORY` values); the :data:`NEIGHBOURS` most similar stretches (Euclidean distance, the
k nearest neighbours of KNN-CAD, Burnaev & Ishimtsev 2016) each predict that the next value is
what followed them. Like the prediction error of Numenta's HTM, the raw score is how badly the
*best* of those predictions missed, in units of the series' range (padded by :data:`PAD` on
each side, as Numenta pads its encoder's range): 0 when one of them was right, rising with the
square of the miss to 1 at :data:`SATURATION` of the range. It knows sequences that a level or a
season does not: the shape of a daily job, a square wave, spikes that always come in pairs.

State per row: a ring of the last :data:`HISTORY` values, and the running range.

>>> import numpy as np
>>> ap = AnalogPrediction(rows=1)
>>> pattern = [0, 0, 1, 5, 1, 0, 0, 0, 0, 0]             # a spike every 10 samples
>>> for i in range(202):
...     ap.learn_many([0], [pattern[i % 10]])
>>> float(ap.score_many([0], [1.0]).raw[0])               # the spike's rise, as always
0.0
>>> float(ap.score_many([0], [5.0]).raw[0])               # its peak, one sample early
1.0
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from agents.anomaly._jit import kernel

FloatArray = npt.NDArray[np.float64]

#: Values remembered per series (kept as float32: 2 KB).
HISTORY = 512
#: Length of a context (the values before the one predicted).
CONTEXT = 8
#: Contexts whose successors are the predictions.
NEIGHBOURS = 3
#: A miss of this fraction of the padded range scores 1.
SATURATION = 0.2
#: The range is padded by this fraction of its width on each side.
PAD = 0.2


class AnalogScore(NamedTuple):
    raw: FloatArray
    #: +1 when the value is above the closest prediction, -1 below
    direction: FloatArray


@kernel
def _score(values, count, low, high, rows, x, context, neighbours, saturation, pad):
    n = rows.shape[0]
    history = values.shape[1]
    raw = np.zeros(n)
    direction = np.ones(n)
    hist = np.empty(history)
    best_d = np.empty(neighbours)
    best_j = np.empty(neighbours, dtype=np.int64)
    for k in range(n):
        r = rows[k]
        seen = count[r]
        if seen < 2 * context + neighbours:
            continue
        # the remembered values, oldest first; the first `first` are not values yet
        first = history - min(seen, history)
        for p in range(history):
            hist[p] = values[r, (seen - history + p) % history]
        # the k contexts hist[j:j+w] nearest the current one, hist[history-w:]
        for i in range(neighbours):
            best_d[i] = np.inf
            best_j[i] = -1
        for j in range(first, history - context):
            d = 0.0
            worst = best_d[neighbours - 1]
            for i in range(context):
                diff = hist[j + i] - hist[history - context + i]
                d += diff * diff
                if d >= worst:  # early abandoning: it cannot be among the nearest
                    break
            if d < worst:  # insert, keeping best_d sorted
                i = neighbours - 1
                while i > 0 and best_d[i - 1] > d:
                    best_d[i] = best_d[i - 1]
                    best_j[i] = best_j[i - 1]
                    i -= 1
                best_d[i] = d
                best_j[i] = j
        # the best prediction: what followed one of them, closest to the value
        miss = np.inf
        for i in range(neighbours):
            if best_j[i] >= 0:
                m = hist[best_j[i] + context] - x[k]
                if abs(m) < abs(miss):
                    miss = m
        if miss > 0.0:
            direction[k] = -1.0
        span = (high[r] - low[r]) * (1.0 + 2.0 * pad)
        if not span > 0.0:
            span = 1.0
        ratio = abs(miss) / (saturation * span)
        raw[k] = min(1.0, ratio) ** 2 if ratio == ratio else 1.0
    return raw, direction


@kernel
def _learn(values, count, low, high, rows, x):
    history = values.shape[1]
    for k in range(rows.shape[0]):
        r = rows[k]
        values[r, count[r] % history] = x[k]
        count[r] += 1
        low[r] = min(low[r], x[k])
        high[r] = max(high[r], x[k])


class AnalogPrediction:
    """k-nearest-neighbour sequence prediction over a series' recent history."""

    def __init__(self, rows: int = 1, *, history: int = HISTORY, context: int = CONTEXT,
                 neighbours: int = NEIGHBOURS, saturation: float = SATURATION,
                 pad: float = PAD) -> None:
        self.context, self.neighbours = context, neighbours
        self.saturation, self.pad = saturation, pad
        self.values = np.zeros((rows, history), dtype=np.float32)
        #: values seen (the newest is at ``(count - 1) % history``)
        self.count = np.zeros(rows, dtype=np.int64)
        self.low = np.full(rows, np.inf)
        self.high = np.full(rows, -np.inf)

    def score_many(self, idx: npt.ArrayLike, x: npt.ArrayLike) -> AnalogScore:
        """Raw score in [0, 1] of the values ``x``. Changes nothing."""
        return AnalogScore(*_score(self.values, self.count, self.low, self.high,
                                   np.asarray(idx, dtype=np.int64),
                                   np.asarray(x, dtype=np.float64), self.context,
                                   self.neighbours, self.saturation, self.pad))

    def learn_many(self, idx: npt.ArrayLike, x: npt.ArrayLike) -> None:
        _learn(self.values, self.count, self.low, self.high, np.asarray(idx, dtype=np.int64),
               np.asarray(x, dtype=np.float64))
