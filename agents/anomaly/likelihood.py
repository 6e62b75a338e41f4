"""Numenta's anomaly likelihood over a bank of series: raw scores become calibrated evidence.

A detector's raw score (in [0, 1], 0 for "fully expected") means different things on different
series: a noisy series scores 0.3 all day, a clean one 0. Ahmad, Lavin, Purdy & Agha
("Unsupervised real-time anomaly detection for streaming data", Neurocomputing 2017) turn it into
a likelihood: the average of the last :data:`AVERAGE_WINDOW` raw scores is compared with the
normal distribution that this average has had on this series so far (mean and variance, floored
at :data:`MIN_MEAN` and :data:`MIN_VARIANCE` so that a series whose raw score is almost always 0
is not alarmed by the slightest blip); its two-sided tail probability is how surprising the
recent raw scores are. Numenta re-estimates the distribution over a window of the last 8,640
averages; here it is an exponentially weighted mean and variance (half-life
:data:`HALFLIFE_STEPS`), so the state is a fixed handful of numbers per series.

The result is *evidence in decades*: ``-log10(tail probability)``. 5 means a one-in-100,000
sample, on any series: one threshold means the same on every series and every kind of raw score.
The first :data:`LEARN_STEPS` averages are not learned (the detector behind the raw score is
still learning), the next :data:`ESTIMATE_STEPS` only build the distribution; evidence is 0
until both have passed (:attr:`AnomalyLikelihood.ready`).

Every array has a leading axis of rows (series) and a second of columns (several raw scores of
the same series); ``idx`` picks the rows a call works on.

>>> import numpy as np
>>> lik = AnomalyLikelihood(rows=1)
>>> rng = np.random.default_rng(0)
>>> for _ in range(600):
...     raw = [[0.1 * rng.random()]]
...     lik.learn_many([0], raw)
>>> calm = lik.score_many([0], [[0.05]]).evidence[0, 0]
>>> burst = lik.score_many([0], [[1.0]]).evidence[0, 0]
>>> bool(calm < 1.0), bool(burst > 5.0)
(True, True)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from agents.anomaly._jit import kernel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Index = npt.ArrayLike

#: Raw scores averaged before their likelihood is taken (Numenta: 10).
AVERAGE_WINDOW = 10
#: Averages not learned at first, while the detector behind them learns its series.
LEARN_STEPS = 150
#: Averages learned before any evidence is given.
ESTIMATE_STEPS = 150
#: Half-life, in samples, of the averages' mean and variance.
HALFLIFE_STEPS = 1000.0
#: Floors of the averages' mean and variance (Numenta's lower-bound check).
MIN_MEAN = 0.03
MIN_VARIANCE = 0.0003


@kernel
def _decades(z):
    """-log10 of the standard normal upper tail at ``z`` (a float), without underflow."""
    if z < 30.0:
        return -math.log10(0.5 * math.erfc(z / math.sqrt(2.0)))
    # the asymptotic series of log Q(z), exact to 1e-9 here
    z2 = z * z
    log_q = (-0.5 * z2 - math.log(z) - 0.5 * math.log(2.0 * math.pi)
             + math.log(1.0 - 1.0 / z2 + 3.0 / (z2 * z2) - 15.0 / (z2 * z2 * z2)))
    return -log_q / math.log(10.0)


def decades(z: float) -> float:
    """``-log10`` of the standard normal upper tail of ``z``, without underflow (z = 37 is
    about 300 decades).

    >>> [round(decades(z), 2) for z in (0.0, 4.2649, 10.0, 40.0)]
    [0.3, 5.0, 23.12, 349.44]
    """
    return float(_decades(float(z)))


@kernel
def _score(recent, mean, variance, steps, rows, raw, ready_steps, min_mean, min_variance):
    n, columns = raw.shape
    window = recent.shape[2]
    evidence = np.zeros((n, columns))
    average = np.zeros((n, columns))
    for k in range(n):
        r = rows[k]
        s = steps[r]
        count = min(s + 1, window)
        for c in range(columns):
            total = raw[k, c]
            for i in range(window):
                total += recent[r, c, i]
            # the ring holds zeros where nothing was written yet: the oldest drops out
            avg = (total - recent[r, c, s % window]) / count
            average[k, c] = avg
            if s >= ready_steps:
                m = max(mean[r, c], min_mean)
                sd = math.sqrt(max(variance[r, c], min_variance))
                evidence[k, c] = _decades(abs(avg - m) / sd)  # two-sided, as Numenta's
    return evidence, average


@kernel
def _learn(recent, mean, variance, steps, rows, raw, average, learn_steps, alpha):
    n, columns = raw.shape
    window = recent.shape[2]
    for k in range(n):
        r = rows[k]
        s = steps[r]
        learned = s - learn_steps  # averages learned so far, once not negative
        for c in range(columns):
            if learned >= 0:
                a = max(alpha, 1.0 / (learned + 1.0))
                delta = average[k, c] - mean[r, c]
                mean[r, c] += a * delta
                variance[r, c] = (1.0 - a) * (variance[r, c] + a * delta * delta)
            recent[r, c, s % window] = raw[k, c]
        steps[r] = s + 1


class LikelihoodScore(NamedTuple):
    #: evidence in decades, shape (rows, columns); 0 while warming up
    evidence: FloatArray
    #: the averages the evidence was taken of
    average: FloatArray


class AnomalyLikelihood:
    """Evidence in decades from raw scores, for ``rows`` series of ``columns`` raw scores each.

    Parameters
    ----------
    rows, columns
        The bank's shape: one likelihood per row and column.
    average_window, learn_steps, estimate_steps, halflife_steps, min_mean, min_variance
        See the module constants.
    """

    def __init__(self, rows: int = 1, columns: int = 1, *,
                 average_window: int = AVERAGE_WINDOW, learn_steps: int = LEARN_STEPS,
                 estimate_steps: int = ESTIMATE_STEPS, halflife_steps: float = HALFLIFE_STEPS,
                 min_mean: float = MIN_MEAN, min_variance: float = MIN_VARIANCE) -> None:
        self.learn_steps = learn_steps
        self.estimate_steps = estimate_steps
        self.alpha = 1.0 - 0.5 ** (1.0 / halflife_steps)
        self.min_mean = min_mean
        self.min_variance = min_variance
        #: the last ``average_window`` raw scores, at position ``steps % average_window``
        self.recent = np.zeros((rows, columns, average_window))
        self.mean = np.zeros((rows, columns))
        self.variance = np.zeros((rows, columns))
        #: raw scores seen per row (all columns step together)
        self.steps = np.zeros(rows, dtype=np.int64)

    @property
    def rows(self) -> int:
        return int(self.steps.shape[0])

    def ready(self, idx: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which of the rows ``idx`` give evidence (their warm-up is behind them)."""
        rows = np.asarray(idx, dtype=np.int64)
        return np.asarray(self.steps[rows] >= self.learn_steps + self.estimate_steps)

    def score_many(self, idx: npt.ArrayLike, raw: npt.ArrayLike) -> LikelihoodScore:
        """Evidence in decades of ``raw`` (shape ``(len(idx), columns)``), before learning it.
        Changes nothing."""
        return LikelihoodScore(*_score(
            self.recent, self.mean, self.variance, self.steps, np.asarray(idx, dtype=np.int64),
            np.asarray(raw, dtype=np.float64), self.learn_steps + self.estimate_steps,
            self.min_mean, self.min_variance))

    def learn_many(self, idx: npt.ArrayLike, raw: npt.ArrayLike,
                   scored: LikelihoodScore | None = None) -> None:
        """Learn ``raw`` (shape ``(len(idx), columns)``) for the rows ``idx``."""
        rows = np.asarray(idx, dtype=np.int64)
        raw = np.asarray(raw, dtype=np.float64)
        if scored is None:
            scored = self.score_many(rows, raw)
        _learn(self.recent, self.mean, self.variance, self.steps, rows, raw, scored.average,
               self.learn_steps, self.alpha)


#: Evidence (decades) of Numenta's red zone: an onset is reported at full strength.
RED_DECADES = 5.0
#: What a sample that stays in the red zone is reported as (Numenta's yellow zone).
YELLOW_DECADES = 3.0


def onset(evidence: FloatArray, previous: FloatArray) -> FloatArray:
    """Numenta's likelihood filter: only the first sample of a run in the red zone keeps its
    evidence; the next ones, while the run lasts, are reported at :data:`YELLOW_DECADES`.
    ``previous`` is each series' evidence at its last sample. The service's incidents do the
    same (one alert per episode); benchmarks that score every row (NAB) read this.

    >>> onset(np.array([9.0, 9.0, 2.0]), np.array([0.0, 7.0, 7.0])).tolist()
    [9.0, 3.0, 2.0]
    """
    return np.where((previous >= RED_DECADES) & (evidence >= RED_DECADES), YELLOW_DECADES,
                    evidence)


#: Evidence (decades) that :func:`squash` maps to 0.5.
SQUASH_DECADES = 10.0


def squash(evidence: float) -> float:
    """Evidence in decades onto a score in [0, 1): ``e / (e + 10)`` (10 decades is 0.5, 30 is
    0.75); :func:`agents.anomaly.feedback.z_for_score` is its inverse.

    >>> squash(0.0), squash(10.0), squash(30.0)
    (0.0, 0.5, 0.75)
    """
    return evidence / (evidence + SQUASH_DECADES) if evidence > 0 else 0.0
