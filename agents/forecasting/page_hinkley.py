"""The Page-Hinkley change detector, as River implements it, on seven numbers.

River's ``drift.PageHinkley`` (mode ``"both"``) step for step (tested against River on the
same stream): a running mean, the cumulative deviations above and below it (forgotten at rate
``1 - alpha``) and their extremes. A change is signalled when either cumulative deviation has
moved more than ``threshold`` from its extreme, after ``min_instances`` values; the next value
starts afresh. The state is a slice of a row (:func:`ph_update`), so the series forecaster's
kernels run it in place; :class:`PageHinkley` is the same on a row of its own.

>>> ph = PageHinkley(min_instances=10, delta=0.1, threshold=5.0)
>>> flags = [ph.update(1.0 if i < 50 else 3.0) or ph.drift_detected for i in range(60)]
>>> flags.index(True)
52
"""

from __future__ import annotations

import math

import numpy as np

from agents.anomaly._jit import kernel

#: n, mean, sum up, sum down, min up, max down, signalled (1.0) on the last value
WIDTH = 7


def fresh() -> np.ndarray:
    """A detector's state before its first value."""
    return np.array([0.0, 0.0, 0.0, 0.0, math.inf, -1.0, 0.0])


@kernel
def ph_update(v, x, min_instances, delta, threshold, alpha):
    """Learn ``x`` into the state ``v`` (:data:`WIDTH` values); True on a change."""
    if v[6]:  # the value after a change starts afresh
        v[0] = 0.0
        v[1] = 0.0
        v[2] = 0.0
        v[3] = 0.0
        v[4] = math.inf
        v[5] = -1.0
        v[6] = 0.0
    v[0] += 1.0
    n = v[0]
    v[1] += (1.0 / n) * (x - v[1])
    dev = x - v[1]
    v[2] = alpha * v[2] + dev - delta
    v[3] = alpha * v[3] + dev + delta
    if v[2] < v[4]:
        v[4] = v[2]
    if v[3] > v[5]:
        v[5] = v[3]
    if n >= min_instances and (v[2] - v[4] > threshold or v[5] - v[3] > threshold):
        v[6] = 1.0
        return True
    return False


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

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.state = fresh()

    @property
    def drift_detected(self) -> bool:
        """Whether the last value signalled a change."""
        return bool(self.state[6])

    def update(self, x: float) -> None:
        """Learn ``x``; sets ``drift_detected``."""
        ph_update(self.state, float(x), float(self.min_instances), self.delta,
                  self.threshold, self.alpha)
