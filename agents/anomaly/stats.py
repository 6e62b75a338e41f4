"""Small online statistics the detectors are built from: bounded state, O(1) updates.

>>> s = EWStats(halflife=10)
>>> for x in [1.0, 2.0, 3.0] * 20:
...     s.update(x)
>>> round(s.mean, 1), round(s.std, 1)
(2.0, 0.8)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


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
        n = self.n = self.n + 1
        a = self.alpha  # max(alpha, 1/n), without the call: this runs for every number learned
        if 1.0 / n > a:
            a = 1.0 / n
        mean = self.mean
        delta = x - mean
        self.mean = mean + a * delta
        self.var = (1.0 - a) * (self.var + a * delta * delta)

    @property
    def std(self) -> float:
        var = self.var
        return math.sqrt(0.0 if var < 0.0 else var)  # max(var, 0.0)

    def as_tuple(self) -> tuple[float, int, float, float]:
        """The state as plain numbers, ``(alpha, n, mean, var)``: see :meth:`from_tuple`."""
        return (self.alpha, self.n, self.mean, self.var)

    @staticmethod
    def from_tuple(s: tuple[float, int, float, float]) -> EWStats:
        """The EWStats whose :meth:`as_tuple` is ``s``."""
        stats = EWStats.__new__(EWStats)
        stats.alpha, stats.n, stats.mean, stats.var = s
        return stats

    def __reduce__(self) -> tuple[Callable[..., EWStats], tuple[float, int, float, float]]:
        # Pickled as a call of _ewstats on the four numbers: a VM's state holds ~80 of these,
        # and this pickles them faster than a __getstate__ / __setstate__ pair does.
        return (_ewstats, self.as_tuple())

    def __setstate__(self, s: tuple[float, int, float, float]) -> None:
        # Only for states pickled before __reduce__ (as this tuple, by a __getstate__).
        self.alpha, self.n, self.mean, self.var = s


def _ewstats(alpha: float, n: int, mean: float, var: float) -> EWStats:
    """The EWStats with this state (what pickled EWStats load with: keep its name)."""
    s = EWStats.__new__(EWStats)
    s.alpha, s.n, s.mean, s.var = alpha, n, mean, var
    return s


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
        a = short.alpha  # max(alpha, 1 / (n + 1)), as in EWStats.update
        if 1.0 / (short.n + 1) > a:
            a = 1.0 / (short.n + 1)
        return short.mean + a * (raw - short.mean)

    def score_one(self, raw: float) -> float:
        """How many standard deviations the recent level, ``raw`` included, lies above its
        long-run mean (no update); 0 during warm-up. ``1 - normal_tail(z)`` is the
        likelihood."""
        long = self.long
        if long.n < self.warmup:
            return 0.0
        sd = long.std
        if self.min_std > sd:  # sd = max(long.std, min_std)
            sd = self.min_std
        return (self._average_with(raw) - long.mean) / sd

    def learn_one(self, raw: float) -> None:
        short = self.short
        short.update(raw)
        self.long.update(short.mean)

    def as_tuple(self) -> tuple[Any, ...]:
        """The state as plain values: both EWStats' :meth:`~EWStats.as_tuple`, the warm-up
        and the floor of the standard deviation. See :meth:`from_tuple`."""
        return (self.short.as_tuple(), self.long.as_tuple(), self.warmup, self.min_std)

    @staticmethod
    def from_tuple(s: tuple[Any, ...]) -> Likelihood:
        """The Likelihood whose :meth:`as_tuple` is ``s``."""
        lik = Likelihood.__new__(Likelihood)
        short, long, lik.warmup, lik.min_std = s
        lik.short, lik.long = EWStats.from_tuple(short), EWStats.from_tuple(long)
        return lik

    def __reduce__(self) -> tuple[Callable[..., Likelihood], tuple[Any, ...]]:
        # As EWStats.__reduce__: a call of _likelihood pickles faster.
        return (_likelihood, (self.short, self.long, self.warmup, self.min_std))

    def __setstate__(self, s: tuple[EWStats, EWStats, int, float]) -> None:
        # Only for states pickled before __reduce__ (as this tuple, by a __getstate__).
        self.short, self.long, self.warmup, self.min_std = s


def _likelihood(short: EWStats, long: EWStats, warmup: int, min_std: float) -> Likelihood:
    """The Likelihood with this state (what pickled ones load with: keep its name)."""
    lik = Likelihood.__new__(Likelihood)
    lik.short, lik.long, lik.warmup, lik.min_std = short, long, warmup, min_std
    return lik
