"""The univariate detector: four published members, one calibrated scale, over a bank of series.

Each series (a VM's metric, or a NAB file) is watched by four members, each a published method
implemented here from its description:

- ``range`` (:mod:`~agents.anomaly.range`): a value beyond the series' running range, Numenta's
  spatial anomaly, graded by how far;
- ``seasonal`` (:mod:`~agents.anomaly.seasonal`): Brutlag's Holt-Winters deviation band on a
  daily season;
- ``level`` (:mod:`~agents.anomaly.level`): a fast moving average leaving a slow one;
- ``analog`` (:mod:`~agents.anomaly.analog`): k-nearest-neighbour sequence prediction, the miss
  of the best prediction (the raw score of Numenta's HTM, from a simpler sequence memory).

The last three give raw scores in [0, 1]; each goes through its own Numenta anomaly likelihood
(:mod:`~agents.anomaly.likelihood`), which makes it *evidence in decades* (``-log10`` of a tail
probability, on this series' own history). ``range`` is graded in decades directly. The rule
that combines them was fixed before any benchmark: the series' evidence is the strongest
member's. Every constant is set once, for every series; nothing is fitted per series but the
members' own running state. No look-ahead: :meth:`SeriesDetector.score_many` reads the state,
:meth:`SeriesDetector.learn_many` then learns the same values.

Rows are independent series stepped together: ``idx`` names the rows of a call (each at most
once), ``t`` their timestamps (epoch seconds) and ``x`` their values.

>>> import math
>>> import numpy as np
>>> det = SeriesDetector(rows=1)
>>> rng = np.random.default_rng(1)
>>> best = []
>>> for i in range(2000):
...     t = 300.0 * i
...     x = 10 + math.sin(i / 20) + rng.normal(0, 0.1) + (8 if i == 1500 else 0)
...     s = det.score_many([0], [t], [x])
...     det.learn_many([0], [t], [x], s)
...     best.append(float(s.evidence.max()))
>>> int(np.argmax(best)), MEMBERS[int(np.argmax(det.score_many([0], [t], [25.0]).evidence))]
(1500, 'range')
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from agents.anomaly._jit import kernel
from agents.anomaly.analog import AnalogPrediction, AnalogScore
from agents.anomaly.level import LevelScore, LevelShift
from agents.anomaly.likelihood import AnomalyLikelihood, LikelihoodScore
from agents.anomaly.range import RangeNovelty
from agents.anomaly.seasonal import SeasonalResidual, SeasonalScore
from agents.anomaly.trend import TrendGrowth

FloatArray = npt.NDArray[np.float64]

#: The members, in the order of :attr:`SeriesScores.evidence`'s columns.
MEMBERS: tuple[str, ...] = ("range", "seasonal", "level", "analog", "trend")


class SeriesScores(NamedTuple):
    """What :meth:`SeriesDetector.score_many` found (one row per series scored)."""

    #: evidence in decades, one column per member (:data:`MEMBERS`)
    evidence: FloatArray
    #: the side each member's evidence points to: +1 up, -1 down (range: beyond which end;
    #: level: the fast mean against the slow; seasonal and analog: the value against the slow
    #: mean; trend: up)
    direction: FloatArray
    #: the raw scores of the likelihood members (seasonal, level, analog, trend)
    raw: FloatArray
    likelihood: LikelihoodScore
    #: which rows give evidence (their warm-up is behind them)
    ready: npt.NDArray[np.bool_]
    seasonal: SeasonalScore
    level: LevelScore
    analog: AnalogScore


@kernel
def _raw(seasonal, level, analog, trend, outside, trend_rows, rows):
    """The likelihood members' raw scores, one column each (trend only where watched)."""
    n = rows.shape[0]
    raw = np.empty((n, 5))
    for k in range(n):
        raw[k, 0] = seasonal[k]
        raw[k, 1] = level[k]
        raw[k, 2] = analog[k]
        raw[k, 3] = trend[k] if trend_rows[rows[k]] else 0.0
        raw[k, 4] = outside[k]
    return raw


@kernel
def _assemble(range_evidence, range_direction, likely, level_direction, x, slow, trend_rows,
              steps, rows, ready_steps):
    """Evidence and direction per member (the columns of MEMBERS) and readiness, per row."""
    n = rows.shape[0]
    evidence = np.zeros((n, 5))
    direction = np.ones((n, 5))
    ready = np.zeros(n, dtype=np.bool_)
    for k in range(n):
        r = rows[k]
        ready[k] = steps[r] >= ready_steps
        # a value beyond the range counts once, graded; staying out, through its likelihood
        evidence[k, 0] = max(range_evidence[k] if ready[k] else 0.0, likely[k, 4])
        evidence[k, 1] = likely[k, 0]
        evidence[k, 2] = likely[k, 1]
        evidence[k, 3] = likely[k, 2]
        evidence[k, 4] = likely[k, 3] if trend_rows[r] else 0.0
        # the side a likelihood member points to is the episode's, not one sample's: its
        # evidence sums the last samples' surprise, whose own signs flip within a spike
        above = 1.0 if x[k] >= slow[r] else -1.0
        direction[k, 0] = range_direction[k]
        direction[k, 1] = above
        direction[k, 2] = level_direction[k]
        direction[k, 3] = above
    return evidence, direction, ready


class SeriesDetector:
    """The four members and their likelihoods for ``rows`` series (see the module docstring)."""

    def __init__(self, rows: int = 1, trend: npt.ArrayLike = False) -> None:
        self.range = RangeNovelty(rows)
        self.seasonal = SeasonalResidual(rows)
        self.level = LevelShift(rows)
        self.analog = AnalogPrediction(rows)
        self.trend = TrendGrowth(rows)
        #: the rows whose sustained growth is evidence (``trend``): memory, where leaks show
        self.trend_rows = np.broadcast_to(np.asarray(trend, dtype=bool), (rows,)).copy()
        self.likelihood = AnomalyLikelihood(rows, columns=5)

    @property
    def rows(self) -> int:
        return self.likelihood.rows

    def ready(self, idx: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which rows give evidence (the likelihoods' warm-up is behind them)."""
        return self.likelihood.ready(idx)

    def baseline(self, idx: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(slow mean, spread) of each row: what values are explained against."""
        return self.level.baseline(idx)

    def score_many(self, idx: npt.ArrayLike, t: npt.ArrayLike, x: npt.ArrayLike
                   ) -> SeriesScores:
        """Every member's evidence for the values ``x`` at times ``t``. Changes nothing."""
        rows = np.asarray(idx, dtype=np.int64)
        t = np.asarray(t, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        seasonal = self.seasonal.score_many(rows, t, x)
        level = self.level.score_many(rows, x)
        analog = self.analog.score_many(rows, x)
        trend = self.trend.score_many(rows, t, x)
        range_evidence, range_direction, outside = self.range.score_many(rows, x)
        raw = _raw(seasonal.raw, level.raw, analog.raw, trend, outside, self.trend_rows, rows)
        likely = self.likelihood.score_many(rows, raw)
        evidence, direction, ready = _assemble(
            range_evidence, range_direction, likely.evidence, level.direction, x,
            self.level.slow, self.trend_rows, self.likelihood.steps, rows,
            self.likelihood.learn_steps + self.likelihood.estimate_steps)
        return SeriesScores(evidence, direction, raw, likely, ready, seasonal, level, analog)

    def learn_many(self, idx: npt.ArrayLike, t: npt.ArrayLike, x: npt.ArrayLike,
                   scored: SeriesScores | None = None) -> None:
        """Learn the values ``x`` at times ``t`` (``scored``: their :meth:`score_many`)."""
        rows = np.asarray(idx, dtype=np.int64)
        x = np.asarray(x, dtype=np.float64)
        if scored is None:
            scored = self.score_many(rows, t, x)
        self.likelihood.learn_many(rows, scored.raw, scored.likelihood)
        self.seasonal.learn_many(rows, t, x, scored.seasonal)
        self.level.learn_many(rows, x, scored.level)
        self.analog.learn_many(rows, x)
        self.trend.learn_many(rows, t, x)
        self.range.learn_many(rows, x)
