"""Cheap online point forecasters, all fed from one small ring of recent values.

Each candidate forecasts a flat path (the same value at every horizon) except the daily
profile, which forecasts the learned value at the target's time of day. Under absolute error
(what WAPE measures) the best flat forecast is a median, so rolling medians of several lengths
sit beside the last value and exponential averages; online selection
(:class:`~agents.forecasting.series.SeriesForecaster`) picks, per series and horizon, the one
that has erred least lately.

>>> ring = Ring(8)
>>> for y in [1.0, 9.0, 2.0, 3.0]:
...     ring.append(y)
>>> median_of_last(ring, 3), median_of_last(ring, 10)
(3.0, 2.5)
"""

from __future__ import annotations

from array import array
from statistics import median

_DAY_S = 86400.0

#: Rolling-median lengths, in samples.
MEDIAN_LENGTHS = (3, 6, 12, 24, 48)
#: Exponential smoothing factors.
EWMA_ALPHAS = (0.1, 0.3, 0.6)
#: The candidates, in a fixed order (the order of every per-candidate array).
CANDIDATES: tuple[str, ...] = (
    "last", *(f"ewma_{a:g}" for a in EWMA_ALPHAS), *(f"median_{n}" for n in MEDIAN_LENGTHS),
    "daily",
)


class Ring:
    """The last ``size`` values, oldest first, in a compact array."""

    __slots__ = ("size", "values")

    def __init__(self, size: int) -> None:
        self.size = size
        self.values = array("d")

    def append(self, y: float) -> None:
        self.values.append(y)
        if len(self.values) > self.size:
            del self.values[0]

    def __len__(self) -> int:
        return len(self.values)

    def __getstate__(self) -> tuple[int, bytes]:
        return (self.size, self.values.tobytes())

    def __setstate__(self, s: tuple[int, bytes]) -> None:
        self.size = s[0]
        self.values = array("d")
        self.values.frombytes(s[1])


def median_of_last(ring: Ring, n: int) -> float:
    """Median of the last ``n`` values (fewer while the ring fills)."""
    return float(median(ring.values[-n:])) if len(ring) else 0.0


class DailyProfile:
    """The level of each time-of-day slot, learned by exponential smoothing.

    ``slots`` per day (48: half-hours) whatever the sampling step, so state does not grow with
    the reporting rate.
    """

    __slots__ = ("alpha", "levels", "slots")

    def __init__(self, slots: int = 48, alpha: float = 0.2) -> None:
        self.slots = slots
        self.alpha = alpha
        self.levels = array("d", [float("nan")] * slots)

    def _slot(self, timestamp: float) -> int:
        return int((timestamp % _DAY_S) / _DAY_S * self.slots)

    def learn_one(self, timestamp: float, y: float) -> None:
        i = self._slot(timestamp)
        old = self.levels[i]
        self.levels[i] = y if old != old else old + self.alpha * (y - old)

    def at(self, timestamp: float, default: float) -> float:
        v = self.levels[self._slot(timestamp)]
        return default if v != v else v

    def __getstate__(self) -> tuple[int, float, bytes]:
        return (self.slots, self.alpha, self.levels.tobytes())

    def __setstate__(self, s: tuple[int, float, bytes]) -> None:
        self.slots, self.alpha = s[0], s[1]
        self.levels = array("d")
        self.levels.frombytes(s[2])


class CandidateSet:
    """Every candidate of :data:`CANDIDATES` for one series."""

    def __init__(self) -> None:
        self.ring = Ring(max(MEDIAN_LENGTHS))
        self.ewma = array("d", [0.0] * len(EWMA_ALPHAS))
        self.profile = DailyProfile()
        self.n = 0

    def learn_one(self, timestamp: float, y: float) -> None:
        self.ring.append(y)
        for i, a in enumerate(EWMA_ALPHAS):
            self.ewma[i] = y if self.n == 0 else self.ewma[i] + a * (y - self.ewma[i])
        self.profile.learn_one(timestamp, y)
        self.n += 1

    def flat(self) -> list[float]:
        """The flat candidates' forecasts (all but ``daily``), in :data:`CANDIDATES` order."""
        last = self.ring.values[-1] if self.n else 0.0
        return [last, *self.ewma, *(median_of_last(self.ring, n) for n in MEDIAN_LENGTHS)]

    def forecast(self, timestamp: float, horizons_s: list[float]) -> list[list[float]]:
        """Per horizon, every candidate's forecast in :data:`CANDIDATES` order."""
        flat = self.flat()
        return [[*flat, self.profile.at(timestamp + h, flat[0])] for h in horizons_s]
