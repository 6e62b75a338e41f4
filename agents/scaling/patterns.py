"""Online workload patterns per VM: periodic (daily or weekly), bursty, steady, growing, idle.

:class:`PatternDetector` keeps hourly means of the VM's cpu use and memory use (two weeks, in
single precision) plus each hour's peak, and re-classifies once an hour:

* ``idle``: cpu under ``idle_cpu_pct`` on average over the last day;
* ``growing``: memory rising steadily over the last three days (a least-squares slope that
  adds more than ``growth`` of the mean over the window, with R^2 of at least 0.5);
* ``periodic_weekly`` / ``periodic_daily``: the autocorrelation of the hourly cpu means at a
  lag of one week (from two weeks of history) or one day (from three days) is at least
  ``min_acf``;
* ``bursty``: hours whose peak is on average ``burst_ratio`` times their mean or more;
* ``steady``: none of the above.

Until a day has been seen the pattern is ``unknown``. The first matching rule wins, in that
order.

>>> import math
>>> d = PatternDetector()
>>> for i in range(288 * 4):
...     d.learn_one(300.0 * i, 40 + 30 * math.sin(2 * math.pi * i / 288), 2e9)
>>> d.pattern, d.acf_daily > 0.6
('periodic_daily', True)
"""

from __future__ import annotations

from array import array
from operator import attrgetter
from typing import Literal

import numpy as np

Pattern = Literal["periodic_daily", "periodic_weekly", "bursty", "steady", "growing", "idle",
                  "unknown"]
PATTERNS: tuple[Pattern, ...] = ("periodic_daily", "periodic_weekly", "bursty", "steady",
                                 "growing", "idle", "unknown")
_HOURS_KEPT = 24 * 14


class PatternDetector:
    """Classifies one VM's workload from hourly aggregates; see the module docstring."""

    __slots__ = ("acf_daily", "acf_weekly", "burst_ratio", "burstiness", "cpu_hourly", "growth",
                 "growth_per_day", "hour", "hour_cpu", "hour_max", "hour_mem", "hour_n",
                 "idle_cpu_pct", "mem_hourly", "min_acf", "pattern")

    def __init__(self, *, min_acf: float = 0.3, idle_cpu_pct: float = 2.0, growth: float = 0.2,
                 burst_ratio: float = 2.5) -> None:
        self.min_acf = min_acf
        self.idle_cpu_pct = idle_cpu_pct
        self.growth = growth
        self.burst_ratio = burst_ratio
        self.cpu_hourly = array("f")
        self.mem_hourly = array("f")
        self.hour = -1
        self.hour_cpu = self.hour_mem = self.hour_max = 0.0
        self.hour_n = 0
        self.burstiness = 1.0  # EW mean of hour peak / hour mean
        self.acf_daily = self.acf_weekly = 0.0
        self.growth_per_day = 0.0  # memory, as a share of its mean
        self.pattern: Pattern = "unknown"

    def learn_one(self, timestamp: float, cpu_pct: float, memory_used_bytes: float) -> None:
        hour = int(timestamp // 3600.0)
        if hour != self.hour and self.hour_n:
            self._close_hour()
        self.hour = hour
        self.hour_cpu += cpu_pct
        self.hour_mem += memory_used_bytes
        self.hour_max = max(self.hour_max, cpu_pct)
        self.hour_n += 1

    def _close_hour(self) -> None:
        mean_cpu = self.hour_cpu / self.hour_n
        for ring, v in ((self.cpu_hourly, mean_cpu), (self.mem_hourly,
                                                       self.hour_mem / self.hour_n)):
            ring.append(v)
            if len(ring) > _HOURS_KEPT:
                del ring[0]
        if mean_cpu > 0.5:
            ratio = self.hour_max / mean_cpu
            self.burstiness += 0.05 * (ratio - self.burstiness)
        self.hour_cpu = self.hour_mem = self.hour_max = 0.0
        self.hour_n = 0
        self.pattern = self._classify()

    @staticmethod
    def _acf(x: np.ndarray, lag: int) -> float:
        x = x - x.mean()
        denom = float(x @ x)
        return float(x[lag:] @ x[:-lag]) / denom if denom > 0 else 0.0

    def _classify(self) -> Pattern:
        cpu = np.asarray(self.cpu_hourly, dtype=float)
        n = len(cpu)
        if n < 24:
            return "unknown"
        self.acf_daily = self._acf(cpu[-24 * 7:], 24) if n >= 72 else 0.0
        self.acf_weekly = self._acf(cpu, 168) if n >= 336 else 0.0
        self.growth_per_day = self._growth()
        if float(cpu[-24:].mean()) < self.idle_cpu_pct:
            return "idle"
        if self.growth_per_day * 3 > self.growth:
            return "growing"
        if self.acf_weekly >= self.min_acf and self.acf_weekly > self.acf_daily:
            return "periodic_weekly"
        if self.acf_daily >= self.min_acf:
            return "periodic_daily"
        if self.burstiness >= self.burst_ratio:
            return "bursty"
        return "steady"

    def _growth(self) -> float:
        """Memory's daily growth over the last three days, as a share of its mean (0 unless
        the rise is steady: R^2 >= 0.5)."""
        mem = np.asarray(self.mem_hourly[-72:], dtype=float)
        if len(mem) < 48 or mem.mean() <= 0:
            return 0.0
        hours = np.arange(len(mem), dtype=float)
        slope, intercept = np.polyfit(hours, mem, 1)
        residual = mem - (slope * hours + intercept)
        total = float(((mem - mem.mean()) ** 2).sum())
        r2 = 1.0 - float((residual ** 2).sum()) / total if total > 0 else 0.0
        return float(slope * 24.0 / mem.mean()) if r2 >= 0.5 else 0.0

    def describe(self) -> str:
        """One line for a recommendation's reasons."""
        if self.pattern in ("periodic_daily", "periodic_weekly"):
            acf = self.acf_daily if self.pattern == "periodic_daily" else self.acf_weekly
            return f"pattern {self.pattern} (autocorrelation {acf:.2f})"
        if self.pattern == "growing":
            return f"pattern growing (memory +{100 * self.growth_per_day:.0f}%/day)"
        if self.pattern == "bursty":
            return f"pattern bursty (hourly peak {self.burstiness:.1f}x the mean)"
        return f"pattern {self.pattern}"

    def __getstate__(self) -> tuple[object, ...]:
        return _STATE(self)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        for s, v in zip(self.__slots__, state, strict=True):
            setattr(self, s, v)


#: The stored state of :class:`PatternDetector`: its slots' values, in order.
_STATE = attrgetter(*PatternDetector.__slots__)
