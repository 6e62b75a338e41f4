"""Windowed per-VM features: the one feature code path of the stream, replay and benchmarks.

A :class:`FeatureExtractor` keeps, for one VM, a tumbling window (fixed buckets of
``tumbling_window_s`` of event time; features of the last closed bucket) and a sliding window
(the samples of the last ``sliding_window_s``), over the six metrics of
:data:`schemas.records.METRIC_FIELDS`. For each it gives mean, std, min, max, last and slope
(least squares, units per second), plus the time of day and week. It is pure and synchronous:
the agent stores it in a changelogged table, the backtest keeps it in a dict.

>>> fx = FeatureExtractor(tumbling_window_s=60, sliding_window_s=120)
>>> for t in range(0, 300, 10):
...     f = fx.update(float(t), {"cpu_pct": t / 10})
>>> f["cpu_pct.sliding.mean"], f["cpu_pct.sliding.slope_per_s"]
(23.5, 0.1)
>>> f["cpu_pct.tumbling.max"], fx.step_s
(23.0, 10.0)
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Iterator, Mapping
from statistics import median
from typing import Any

import numpy as np

from schemas.records import METRIC_FIELDS

STATS = ("mean", "std", "min", "max", "last", "slope_per_s")
_MAX_SLIDING_POINTS = 360
#: Two successive values this far apart make a window's standard deviation nonzero whatever
#: the rest of it (their deviations from any mean square to a normal float).
_MOVED = 1e-140
_MIN_BUFFER_ROWS = 8
_STEP_HISTORY = 15


class BucketStats:
    """Running statistics of one metric over one tumbling bucket (Welford + least squares)."""

    __slots__ = ("count", "last", "m2", "max", "mean", "min", "st", "stt", "stx", "t0")

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.count = 0
        self.mean = self.m2 = self.st = self.stt = self.stx = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.last = 0.0

    def add(self, t: float, x: float) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)
        if x < self.min:  # min(self.min, x), without the call
            self.min = x
        if x > self.max:
            self.max = x
        self.last = x
        dt = t - self.t0
        self.st += dt
        self.stt += dt * dt
        self.stx += dt * x

    def result(self) -> dict[str, float]:
        n = self.count
        std = math.sqrt(self.m2 / n) if n else 0.0
        var_t = self.stt / n - (self.st / n) ** 2 if n else 0.0
        slope = ((self.stx / n - (self.st / n) * self.mean) / var_t) if var_t > 1e-12 else 0.0
        return {"mean": self.mean, "std": std, "min": self.min if n else 0.0,
                "max": self.max if n else 0.0, "last": self.last, "slope_per_s": slope}

    def __getstate__(self) -> tuple[float, ...]:
        return (self.t0, self.count, self.mean, self.m2, self.min, self.max, self.last,
                self.st, self.stt, self.stx)

    def __setstate__(self, s: tuple[float, ...]) -> None:
        (self.t0, count, self.mean, self.m2, self.min, self.max, self.last,
         self.st, self.stt, self.stx) = s
        self.count = int(count)


def window_stats(times: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, std, min, max, last and least-squares slope of each column of ``values``.

    ``times`` has shape (n,), ``values`` shape (n, k); each statistic comes back with shape (k,).
    """
    n = len(times)
    if n == 0:
        zeros = np.zeros(values.shape[1] if values.ndim == 2 else 0)
        return dict.fromkeys(STATS, zeros)
    # The arithmetic of ndarray.mean, .std, .min and .max, without their Python wrappers
    # (most of the cost on windows this small): a sum divided by the count; the root of the
    # mean squared deviation from that mean.
    mean = _sum(values, axis=0) / n
    dev = values - mean
    dt = times - _sum(times) / n
    var_t = float(dt @ dt)
    slope = (dt @ dev) / var_t if var_t > 1e-12 else np.zeros_like(mean)
    std = np.sqrt(_sum(np.square(dev), axis=0) / n)
    return {"mean": mean, "std": std, "min": np.minimum.reduce(values, axis=0),
            "max": np.maximum.reduce(values, axis=0), "last": values[-1],
            "slope_per_s": slope}


_sum = np.add.reduce


class FeatureExtractor:
    """Tumbling and sliding window features of one VM's metrics.

    Events older than the newest one seen (or at its very time: a repeat) are counted in
    ``late_events_total`` and leave the
    windows as they are, so a replayed or duplicated message cannot move time backwards.
    """

    def __init__(self, tumbling_window_s: float = 300.0, sliding_window_s: float = 900.0,
                 metrics: tuple[str, ...] = METRIC_FIELDS) -> None:
        self.tumbling_window_s = tumbling_window_s
        self.sliding_window_s = sliding_window_s
        self.metrics = metrics
        self.last_ts: float | None = None
        self.late_events_total = 0
        self._bucket: dict[str, BucketStats] = {}
        self._bucket_index: int | None = None
        self._closed: dict[str, dict[str, float]] = {}
        # The sliding window: rows (time, then each metric) ``_buf[_start:_end]``, oldest
        # first, in a buffer that grows by doubling while the window fills more than 3/4 of
        # it (to at most twice :data:`_MAX_SLIDING_POINTS` rows) and is otherwise compacted
        # when its end is reached.
        self._buf = np.empty((_MIN_BUFFER_ROWS, len(metrics) + 1))
        self._start = self._end = 0
        #: rows pushed since the start, and per metric the last row (counted the same way)
        #: whose value differs from the row before by at least :data:`_MOVED` (-1: none)
        self._pushed = 0
        self._moved = [-1] * len(metrics)
        #: per metric, the last row (counted the same way) whose value is not exactly 0
        self._nonzero = [-1] * len(metrics)
        self._steps: deque[float] = deque(maxlen=_STEP_HISTORY)

    def __getstate__(self) -> tuple[object, ...]:
        # A flat tuple with the statistics as arrays (rows in metric order): a stored state
        # without an object or a name per statistic.
        bucket = (np.array([b.__getstate__() for b in self._bucket.values()])
                  if self._bucket else None)
        closed = (np.array([list(self._closed[m].values()) for m in self.metrics])
                  if self._closed else None)
        return (self.tumbling_window_s, self.sliding_window_s, self.metrics, self.last_ts,
                self.late_events_total, self._bucket_index, bucket, closed,
                self._window().copy(), self._pushed, self._moved, self._nonzero,
                list(self._steps))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (self.tumbling_window_s, self.sliding_window_s, metrics, self.last_ts,
         self.late_events_total, self._bucket_index, bucket, closed, buf, self._pushed,
         self._moved, self._nonzero, steps) = state
        self.metrics = tuple(metrics)
        self._bucket = {}
        if bucket is not None:
            for m, row in zip(self.metrics, bucket.tolist(), strict=True):
                b = self._bucket[m] = BucketStats(0.0)
                b.__setstate__(tuple(row))
        self._closed = ({} if closed is None else
                        {m: dict(zip(STATS, row, strict=True))
                         for m, row in zip(self.metrics, closed.tolist(), strict=True)})
        self._buf = buf
        self._start, self._end = 0, len(buf)
        self._steps = deque(steps, maxlen=_STEP_HISTORY)

    def _window(self) -> np.ndarray:
        """The sliding window's rows (time, then each metric), oldest first."""
        return self._buf[self._start:self._end]

    def _push(self, row: tuple[float, ...]) -> None:
        """``row`` onto the window, the rows older than the window's span off it."""
        buf = self._buf
        horizon = row[0] - self.sliding_window_s
        start, end = self._start, self._end
        pushed = self._pushed
        if end > start:
            previous = buf[end - 1].tolist()
            moved = self._moved
            for j in range(len(moved)):
                if abs(row[j + 1] - previous[j + 1]) >= _MOVED:
                    moved[j] = pushed
        nonzero = self._nonzero
        for j in range(len(nonzero)):
            if row[j + 1] != 0.0:
                nonzero[j] = pushed
        self._pushed = pushed + 1
        if end - start == _MAX_SLIDING_POINTS:
            start += 1
        while start < end and buf[start, 0] <= horizon:
            start += 1
        if end == len(buf):  # out of room: grow, or move the window back to the start
            n = end - start
            size = len(buf)
            if 4 * n >= 3 * size and size < 2 * _MAX_SLIDING_POINTS:  # 3/4 full
                size = max(min(2 * size, 2 * _MAX_SLIDING_POINTS), _MIN_BUFFER_ROWS)
                old, buf = buf, np.empty((size, buf.shape[1]))
                buf[:n] = old[start:end]
                self._buf = buf
            else:
                buf[:n] = buf[start:end]
            start, end = 0, n
        buf[end] = row
        self._start, self._end = start, end + 1

    @property
    def step_s(self) -> float:
        """The VM's reporting interval: the median of its recent inter-arrival times."""
        return median(self._steps) if self._steps else 0.0

    @property
    def count(self) -> int:
        """Samples in the sliding window."""
        return self._end - self._start

    def update(self, timestamp: float, metrics: Mapping[str, float]) -> FeatureVector:
        """Add one sample and return the VM's current feature vector (computed when first
        read, and readable until the next sample is learned)."""
        if self.last_ts is not None and timestamp <= self.last_ts:
            # Older than, or a repeat of, the newest sample: a late or re-delivered event.
            self.late_events_total += 1
            return FeatureVector(self, timestamp)
        if self.last_ts is not None:
            self._steps.append(timestamp - self.last_ts)
        self.last_ts = timestamp
        self._add_tumbling(timestamp, metrics)
        self._push((timestamp, *[float(metrics.get(m, 0.0)) for m in self.metrics]))
        return FeatureVector(self, timestamp)

    def _add_tumbling(self, timestamp: float, metrics: Mapping[str, float]) -> None:
        index = int(timestamp // self.tumbling_window_s)
        if index != self._bucket_index:
            if self._bucket:
                self._closed = {m: b.result() for m, b in self._bucket.items()}
            t0 = index * self.tumbling_window_s
            self._bucket = {m: BucketStats(t0) for m in self.metrics}
            self._bucket_index = index
        for m in self.metrics:
            self._bucket[m].add(timestamp, float(metrics.get(m, 0.0)))

    def features(self, timestamp: float) -> dict[str, float]:
        """The feature vector as of the last sample, with calendar features for ``timestamp``."""
        out: dict[str, float] = {}
        rows = self._window()
        sliding = window_stats(rows[:, 0], rows[:, 1:])
        columns = [sliding[stat].tolist() for stat in STATS]
        tumbling = self._closed or {m: b.result() for m, b in self._bucket.items()}
        for m, sliding_row in zip(self.metrics, zip(*columns, strict=True), strict=True):
            sliding_keys, tumbling_keys = _keys(m)
            out.update(zip(sliding_keys, sliding_row, strict=True))
            out.update(zip(tumbling_keys, tumbling.get(m, _ZEROS).values(), strict=True))
        out["window.sliding.count"] = float(len(rows))
        out.update(calendar_features(timestamp))
        return out


_ZEROS = dict.fromkeys(STATS, 0.0)
_COUNT_KEY = "window.sliding.count"


class FeatureVector(Mapping[str, float]):
    """The feature vector of :meth:`FeatureExtractor.features` as of one sample, computed
    when first read: most samples need a few sliding statistics (the flatline check) or
    nothing, not the whole vector. The sliding window's sample count costs nothing, a sliding
    statistic computes the sliding window's statistics (once), and any other feature the
    whole vector (once). The values are those :meth:`FeatureExtractor.features` gives, bit
    for bit; reading a vector after its VM learned a newer sample raises RuntimeError.
    """

    __slots__ = ("_computed", "_extractor", "_learned", "_sliding", "_timestamp", "count")

    def __init__(self, extractor: FeatureExtractor, timestamp: float) -> None:
        self._extractor = extractor
        self._learned = extractor.last_ts
        self._timestamp = timestamp
        self._sliding: dict[str, np.ndarray] | None = None
        self._computed: dict[str, float] | None = None
        #: samples in the sliding window
        self.count = float(extractor.count)

    def _check(self) -> FeatureExtractor:
        if self._extractor.last_ts != self._learned:
            raise RuntimeError("a feature vector read after its VM learned a newer sample")
        return self._extractor

    def _all(self) -> dict[str, float]:
        computed = self._computed
        if computed is None:
            computed = self._computed = self._check().features(self._timestamp)
        return computed

    def __getitem__(self, key: str) -> float:
        if key == _COUNT_KEY:
            return self.count
        if self._computed is None:
            where = _sliding_index(self._extractor.metrics).get(key)
            if where is not None:
                sliding = self._sliding
                if sliding is None:
                    rows = self._check()._window()
                    sliding = self._sliding = window_stats(rows[:, 0], rows[:, 1:])
                return float(sliding[where[0]][where[1]])
        return self._all()[key]

    def surely_moved(self, metric: str) -> bool:
        """True when the sliding window holds two successive values of ``metric`` at least
        :data:`_MOVED` apart, so that its ``sliding.std`` is certainly not 0 (False: it may
        be; read it). Costs nothing, where reading the statistic computes the window's."""
        fx = self._check()
        try:
            row = fx._moved[fx.metrics.index(metric)]
        except ValueError:
            return False
        return row - 1 >= fx._pushed - fx.count

    def surely_zero(self, metric: str) -> bool:
        """True when every value of ``metric`` in the sliding window is exactly 0, so that its
        ``sliding.std`` is exactly 0 (False: it may be; read it). Costs nothing."""
        fx = self._check()
        try:
            row = fx._nonzero[fx.metrics.index(metric)]
        except ValueError:
            return False
        return fx.count > 0 and row < fx._pushed - fx.count

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


@functools.cache
def _sliding_index(metrics: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """The sliding statistics' feature names -> (statistic, column of the metric)."""
    return {key: (stat, column) for column, m in enumerate(metrics)
            for key, stat in zip(_keys(m)[0], STATS, strict=True)}


@functools.cache
def _keys(metric: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The feature names of ``metric``'s sliding and tumbling statistics, in STATS order."""
    return (tuple(f"{metric}.sliding.{stat}" for stat in STATS),
            tuple(f"{metric}.tumbling.{stat}" for stat in STATS))


def calendar_features(timestamp: float) -> dict[str, float]:
    """Hour of day and day of week (UTC), raw and on the unit circle."""
    day_s = timestamp % 86400.0
    hour = day_s / 3600.0
    dow = float((int(timestamp // 86400) + 3) % 7)  # 1970-01-01 was a Thursday; Monday = 0
    angle = 2 * math.pi * day_s / 86400.0
    return {"hour_of_day": float(math.floor(hour)), "day_of_week": dow,
            "hour_sin": math.sin(angle), "hour_cos": math.cos(angle)}
