"""The Page-Hinkley change detector, as River implements it, in a few plain floats.

River's ``drift.PageHinkley`` (mode ``"both"``) step for step (tested against River on the
same stream), without River's objects in the stored state: a running mean, the cumulative
deviations above and below it (forgotten at rate ``1 - alpha``) and their extremes. A change
is signalled when either cumulative deviation has moved more than ``threshold`` from its
extreme, after ``min_instances`` values; the next value starts afresh.

>>> ph = PageHinkley(min_instances=10, delta=0.1, threshold=5.0)
>>> flags = [ph.update(1.0 if i < 50 else 3.0) or ph.drift_detected for i in range(60)]
>>> flags.index(True)
52
"""

from __future__ import annotations

import math


class PageHinkley:
    """Page-Hinkley test for a change in the mean, up or down.

    Parameters
    ----------
    min_instances
        Values seen before a change can be signalled.
    delta
        The magnitude of change tolerated.
    threshold
        How far a cumulative deviation must move from its extreme to signal a change.
    alpha
        The forgetting factor of the cumulative deviations.
    """

    __slots__ = ("alpha", "delta", "drift_detected", "max_decrease", "mean", "min_increase",
                 "min_instances", "n", "sum_decrease", "sum_increase", "threshold")

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.drift_detected = False
        self._reset()

    def _reset(self) -> None:
        self.n = 0.0
        self.mean = 0.0
        self.sum_increase = 0.0
        self.sum_decrease = 0.0
        self.min_increase = math.inf
        self.max_decrease = -1.0
        self.drift_detected = False

    def update(self, x: float) -> None:
        """Learn ``x``; sets ``drift_detected``."""
        if self.drift_detected:
            self._reset()
        self.n += 1.0
        self.mean += (1.0 / self.n) * (x - self.mean)
        dev = x - self.mean
        self.sum_increase = self.alpha * self.sum_increase + dev - self.delta
        self.sum_decrease = self.alpha * self.sum_decrease + dev + self.delta
        if self.sum_increase < self.min_increase:
            self.min_increase = self.sum_increase
        if self.sum_decrease > self.max_decrease:
            self.max_decrease = self.sum_decrease
        if self.n >= self.min_instances:
            self.drift_detected = (self.sum_increase - self.min_increase > self.threshold
                                   or self.max_decrease - self.sum_decrease > self.threshold)

    def __getstate__(self) -> tuple[float | bool, ...]:
        return (self.min_instances, self.delta, self.threshold, self.alpha, self.drift_detected,
                self.n, self.mean, self.sum_increase, self.sum_decrease, self.min_increase,
                self.max_decrease)

    def __setstate__(self, s: tuple[float | bool, ...]) -> None:
        (min_instances, self.delta, self.threshold, self.alpha, drift_detected, self.n,
         self.mean, self.sum_increase, self.sum_decrease, self.min_increase,
         self.max_decrease) = s
        self.min_instances = int(min_instances)
        self.drift_detected = bool(drift_detected)
