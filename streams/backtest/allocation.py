"""Slack, shortfall and changes of an allocation against use: how ``bench/scaling.py`` compares
scaling policies and how ``novacron backtest`` reports the allocation its recommendations would
have given.

Over the scored samples (from ``scored_from`` on, after a warm-up):

* slack = sum(allocated - used) / sum(allocated), signed (a short step counts against it);
* shortfall = the share of samples where used > allocated;
* changes per VM-day = samples whose allocation differs from the previous sample's, divided by
  the scored time in days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streams.backtest.nab_scoring import FloatArray

DAY_S = 86400.0


@dataclass
class Tally:
    """Sums behind slack, shortfall and changes for one (policy, resource)."""

    allocated: float = 0.0
    used: float = 0.0
    steps: int = 0
    short: int = 0
    changes: int = 0
    days: float = 0.0

    def merge(self, other: Tally) -> None:
        self.allocated += other.allocated
        self.used += other.used
        self.steps += other.steps
        self.short += other.short
        self.changes += other.changes
        self.days += other.days

    @property
    def slack(self) -> float:
        return (self.allocated - self.used) / self.allocated if self.allocated else math.nan

    @property
    def shortfall(self) -> float:
        return self.short / self.steps if self.steps else math.nan

    @property
    def changes_per_vm_day(self) -> float:
        return self.changes / self.days if self.days else math.nan


def score(t: FloatArray, used: FloatArray, allocated: FloatArray, scored_from: float) -> Tally:
    """The tally of the samples at or after ``scored_from``.

    >>> tally = score(np.arange(4.0), np.array([1., 1., 3., 1.]), np.array([2., 2., 2., 4.]), 1.)
    >>> tally.slack, tally.shortfall, tally.changes
    (0.375, 0.3333333333333333, 1)
    """
    scored = t >= scored_from
    if not scored.any():
        return Tally()
    a, u = allocated[scored], used[scored]
    moved = allocated[1:] != allocated[:-1]
    return Tally(allocated=float(a.sum()), used=float(u.sum()), steps=int(scored.sum()),
                 short=int(np.count_nonzero(u > a)),
                 changes=int(np.count_nonzero(moved & scored[1:])),
                 days=float(t[-1] - scored_from) / DAY_S)
