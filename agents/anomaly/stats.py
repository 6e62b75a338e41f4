"""Small online statistics the detectors are built from: bounded state, O(1) updates.

>>> s = EWStats(halflife=10)
>>> for x in [1.0, 2.0, 3.0] * 20:
...     s.update(x)
>>> round(s.mean, 1), round(s.std, 1)
(2.0, 0.8)
"""

from __future__ import annotations

import math


class EWStats:
    """Exponentially weighted mean and variance with a half-life counted in updates.

    Until ``halflife`` updates have been seen, the weight of a new value is at least 1/n, so
    the first values are averaged evenly instead of being swamped by the initial zero.
    """

    __slots__ = ("alpha", "mean", "n", "var")

    def __init__(self, halflife: float) -> None:
        self.alpha = 1.0 - 0.5 ** (1.0 / halflife)
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def update(self, x: float) -> None:
        self.n += 1
        a = max(self.alpha, 1.0 / self.n)
        delta = x - self.mean
        self.mean += a * delta
        self.var = (1.0 - a) * (self.var + a * delta * delta)

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def __getstate__(self) -> tuple[float, int, float, float]:
        return (self.alpha, self.n, self.mean, self.var)

    def __setstate__(self, s: tuple[float, int, float, float]) -> None:
        self.alpha, self.n, self.mean, self.var = s


def normal_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


class Likelihood:
    """How unusual the recent level of a raw score is, given its own history.

    After Numenta's anomaly likelihood: the short moving average of a raw score is compared
    with the long-run distribution of that average (an EW mean and variance); the result is the
    number of standard deviations it lies above the mean (the likelihood is the normal
    probability of not exceeding it). Raw scores of any scale become comparable, which is
    what lets one threshold serve every series.

    >>> lik = Likelihood(short=3, long=500)
    >>> for i in range(400):
    ...     lik.learn_one(1.0 + 0.1 * (i % 3))
    >>> lik.score_one(1.1) < 1.3, lik.score_one(8.0) > 3
    (True, True)
    """

    __slots__ = ("long", "min_std", "short", "warmup")

    def __init__(self, short: int = 5, long: int = 2000, warmup: int = 100,
                 min_std: float = 0.05) -> None:
        self.short = EWStats(short)
        self.long = EWStats(long)
        self.warmup = warmup
        self.min_std = min_std

    def _average_with(self, raw: float) -> float:
        short = self.short
        a = max(short.alpha, 1.0 / (short.n + 1))
        return short.mean + a * (raw - short.mean)

    def score_one(self, raw: float) -> float:
        """How many standard deviations the recent level, ``raw`` included, lies above its
        long-run mean (no update); 0 during warm-up. ``1 - normal_tail(z)`` is the
        likelihood."""
        long = self.long
        if long.n < self.warmup:
            return 0.0
        sd = max(long.std, self.min_std)
        return (self._average_with(raw) - long.mean) / sd

    def learn_one(self, raw: float) -> None:
        self.short.update(raw)
        self.long.update(self.short.mean)

    def __getstate__(self) -> tuple[EWStats, EWStats, int, float]:
        return (self.short, self.long, self.warmup, self.min_std)

    def __setstate__(self, s: tuple[EWStats, EWStats, int, float]) -> None:
        self.short, self.long, self.warmup, self.min_std = s
