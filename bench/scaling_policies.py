"""The baseline scaling policies of ``bench/scaling.py``: static, VPA-style, reactive, and the
perfect-foresight limit.

The online ones (:class:`VPAStyle`, :class:`Reactive`) follow the ``Policy`` protocol of
``bench/scaling.py``: ``learn_one(t, cpu_cores, mem_bytes)`` then ``allocation()`` gives the
(cores, bytes) to use from the next sample on. They see nothing ahead of the sample they learn and
start from the VM's provisioned capacity; their targets are not capped by it (a right-sized
allocation may exceed the old provision, e.g. peak + 15 %), and the harness applies the floors.
The offline ones (:func:`static_allocation`, :func:`limit_allocation`) map a whole VM series to
its allocation at each sample.

>>> vpa = VPAStyle(capacity_cores=2.0, capacity_bytes=8 * GIB, step_s=300.0)
>>> vpa.allocation() == (2.0, 8 * GIB)  # the provisioned capacity until the first hour is over
True
>>> for i in range(13):
...     vpa.learn_one(i * 300.0, 0.5, 1 * GIB)
>>> cores, mem = vpa.allocation()
>>> round(cores, 3), round(mem / GIB, 3)  # p90 (0.5 core) + 15 %; peak + 15 %
(0.575, 1.15)
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

GIB = float(1 << 30)
CPU_FLOOR_CORES = 0.025
MEM_FLOOR_BYTES = 64.0 * (1 << 20)
HOUR_S = 3600.0
DAY_S = 86400.0


def floored(cores: float, mem_bytes: float) -> tuple[float, float]:
    """An allocation raised to the floors (0.025 core, 64 MiB)."""
    return max(cores, CPU_FLOOR_CORES), max(mem_bytes, MEM_FLOOR_BYTES)


# --- offline ------------------------------------------------------------------------------------

def static_allocation(cap_cores: FloatArray, cap_bytes: FloatArray
                      ) -> tuple[FloatArray, FloatArray]:
    """The trace's provisioned capacity at each sample (as it was when that sample was taken)."""
    return np.maximum(cap_cores, CPU_FLOOR_CORES), np.maximum(cap_bytes, MEM_FLOOR_BYTES)


def limit_allocation(cpu: FloatArray, mem: FloatArray, block_steps: int = 72
                     ) -> tuple[FloatArray, FloatArray]:
    """Perfect foresight at four changes a day: each sample gets the peak of the actual usage
    over its fixed block of ``block_steps`` consecutive samples (72 = 6 h at the 300 s step),
    counted from the VM's first sample. A block that holds a gap in the trace spans more than
    6 h of clock time, so there are never more than four changes a day.

    >>> limit_allocation(np.array([.1, .3, .2, .05, .5, .4, .6]), np.full(7, 1e9), 3
    ...                  )[0].tolist()
    [0.3, 0.3, 0.3, 0.5, 0.5, 0.5, 0.6]
    """
    starts = np.arange(0, len(cpu), block_steps)
    counts = np.diff(np.r_[starts, len(cpu)])
    cpu_peak = np.repeat(np.maximum.reduceat(cpu, starts), counts)
    mem_peak = np.repeat(np.maximum.reduceat(mem, starts), counts)
    return np.maximum(cpu_peak, CPU_FLOOR_CORES), np.maximum(mem_peak, MEM_FLOOR_BYTES)


# --- online -------------------------------------------------------------------------------------

class DecayingPercentile:
    """Percentiles of the values seen, each weighted by ``2 ** (t / half_life_s)``: a sample one
    half-life older counts half as much (decay by event time). Exact (VPA's histogram has the
    same weights on 5 %-wide buckets and answers with a bucket's end); samples older than
    ``horizon_half_lives`` half-lives (weight under 1e-9 of the newest) are forgotten.

    >>> p = DecayingPercentile(half_life_s=10.0)
    >>> for t, v in enumerate([1.0] * 10 + [5.0] * 10):
    ...     p.add(float(t), v)
    >>> p.percentile(0.5), p.percentile(0.1)
    (5.0, 1.0)
    """

    def __init__(self, half_life_s: float = DAY_S, horizon_half_lives: float = 30.0) -> None:
        self.half_life_s = half_life_s
        self.horizon_s = horizon_half_lives * half_life_s
        self.times: deque[float] = deque()
        self.values: deque[float] = deque()

    def add(self, t: float, value: float) -> None:
        self.times.append(t)
        self.values.append(value)
        while self.times[0] < t - self.horizon_s:
            self.times.popleft()
            self.values.popleft()

    def percentile(self, q: float) -> float:
        if not self.times:
            return 0.0
        t = np.fromiter(self.times, float, len(self.times))
        v = np.fromiter(self.values, float, len(self.values))
        order = np.argsort(v, kind="stable")
        cumulative = np.cumsum(np.exp2((t[order] - t[-1]) / self.half_life_s))
        k = int(np.searchsorted(cumulative, q * cumulative[-1]))
        return float(v[order[min(k, len(v) - 1)]])


class WindowPeak:
    """The peak of the values of the last ``window_s`` seconds (a monotonic deque)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.items: deque[tuple[float, float]] = deque()

    def add(self, t: float, value: float) -> None:
        while self.items and self.items[-1][1] <= value:
            self.items.pop()
        self.items.append((t, value))
        while self.items[0][0] <= t - self.window_s:
            self.items.popleft()

    def peak(self) -> float:
        return self.items[0][1] if self.items else 0.0


class VPAStyle:
    """Kubernetes VPA-style recommendations, applied in place.

    Every hour of event time: the CPU target is the 90th percentile of the CPU use seen, its
    weights decaying with a 24 h half-life (:class:`DecayingPercentile`), plus 15 %; the memory
    target is the peak of the last 8 days, plus 15 %. Each resource's allocation moves to its
    target only when the target is more than 10 % away from the current allocation. Until the
    first hour is over the VM keeps its provisioned capacity.
    """

    def __init__(self, capacity_cores: float, capacity_bytes: float, step_s: float,
                 cpu_percentile: float = 0.9, margin: float = 0.15,
                 half_life_s: float = DAY_S, memory_window_s: float = 8 * DAY_S,
                 interval_s: float = HOUR_S, tolerance: float = 0.10) -> None:
        self.cpu_percentile, self.margin, self.tolerance = cpu_percentile, margin, tolerance
        self.interval_s = interval_s
        self.cpu_use = DecayingPercentile(half_life_s)
        self.mem_peak = WindowPeak(memory_window_s)
        self.cores, self.bytes = floored(capacity_cores, capacity_bytes)
        self.next_update: float | None = None

    def learn_one(self, t: float, cpu_cores: float, mem_bytes: float) -> None:
        self.cpu_use.add(t, cpu_cores)
        self.mem_peak.add(t, mem_bytes)
        if self.next_update is None:
            self.next_update = t + self.interval_s
        if t < self.next_update:
            return
        self.next_update = t + self.interval_s
        cpu_target, mem_target = floored(
            self.cpu_use.percentile(self.cpu_percentile) * (1 + self.margin),
            self.mem_peak.peak() * (1 + self.margin))
        if abs(cpu_target - self.cores) > self.tolerance * self.cores:
            self.cores = cpu_target
        if abs(mem_target - self.bytes) > self.tolerance * self.bytes:
            self.bytes = mem_target

    def allocation(self) -> tuple[float, float]:
        return self.cores, self.bytes


class _Threshold:
    """One resource of :class:`Reactive`."""

    def __init__(self, capacity: float, floor: float, high: float, low: float, target: float,
                 hold_s: float, cooldown_s: float) -> None:
        self.floor = floor
        self.high, self.low, self.target = high, low, target
        self.hold_s, self.cooldown_s = hold_s, cooldown_s
        self.value = max(capacity, floor)
        self.changed_at = -math.inf
        self.low_since: float | None = None
        self.low_peak = 0.0

    def learn(self, t: float, used: float) -> None:
        utilisation = used / self.value
        if utilisation > self.high:
            self._set(t, used / self.target)
        elif utilisation < self.low:
            if self.low_since is None:
                self.low_since, self.low_peak = t, used
            self.low_peak = max(self.low_peak, used)
            if t - self.low_since >= self.hold_s and t - self.changed_at >= self.cooldown_s:
                self._set(t, self.low_peak / self.target)
        else:
            self.low_since = None

    def _set(self, t: float, value: float) -> None:
        value = max(value, self.floor)
        if value != self.value:
            self.value, self.changed_at = value, t
        self.low_since = None


class Reactive:
    """A reactive threshold scaler, per resource, on the utilisation of the allocation
    (used / allocated):

    * above 80 %: scale up at once to used / 0.6 (no cooldown on the way up);
    * below 30 % on every sample for an hour, and the last change an hour old or more (the
      cooldown): scale down to the peak use of that hour / 0.6;

    never under the floors; it starts at the provisioned capacity.
    """

    def __init__(self, capacity_cores: float, capacity_bytes: float, step_s: float,
                 high: float = 0.8, low: float = 0.3, target: float = 0.6,
                 hold_s: float = HOUR_S, cooldown_s: float = HOUR_S) -> None:
        self.cpu = _Threshold(capacity_cores, CPU_FLOOR_CORES, high, low, target, hold_s,
                              cooldown_s)
        self.mem = _Threshold(capacity_bytes, MEM_FLOOR_BYTES, high, low, target, hold_s,
                              cooldown_s)

    def learn_one(self, t: float, cpu_cores: float, mem_bytes: float) -> None:
        self.cpu.learn(t, cpu_cores)
        self.mem.learn(t, mem_bytes)

    def allocation(self) -> tuple[float, float]:
        return self.cpu.value, self.mem.value
