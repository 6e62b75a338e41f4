"""The per-VM detector: one series detector per metric, plus half-space trees on the joint
shape of all of them.

Each metric has its own :class:`~agents.anomaly.series.SeriesDetector`. River's
``HalfSpaceTrees`` score the VM's metrics together (each standardized by its own running
mean and spread), which catches combinations no single metric shows; their score becomes a
z-score through its own :class:`~agents.anomaly.stats.Likelihood`, like every other kind of
evidence. With two metrics or more, a fifth kind, ``stuck``, watches for a stuck agent: a run of
samples in which every metric repeats its previous value exactly (:class:`StuckRun`). The VM's
score is the strongest weighted z-score over metrics and kinds, squashed onto [0, 1). NAB's
univariate benchmark runs this same class with one metric (no ``stuck`` evidence).

>>> import random
>>> rng = random.Random(3)
>>> det = VMDetector(metrics=("cpu_pct", "net_rx_bytes_per_s"))
>>> for i in range(1500):
...     x = {"cpu_pct": 20 + rng.gauss(0, 2), "net_rx_bytes_per_s": 1e5 + rng.gauss(0, 1e3)}
...     _ = det.score_one(300.0 * i, x)
...     det.learn_one(300.0 * i, x)
>>> v = det.score_one(450000.0, {"cpu_pct": 97.0, "net_rx_bytes_per_s": 1e5})
>>> v.score > 0.5, v.metric, v.kind, v.direction
(True, 'cpu_pct', 'extreme', 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist

from river import anomaly

from agents.anomaly import hst_state
from agents.anomaly.series import WEIGHTS, SeriesDetector, squash
from agents.anomaly.stats import EWStats, Likelihood
from schemas.records import METRIC_FIELDS, FeatureContribution

RARITY_WEIGHT = 1.0
TREND_METRICS: tuple[str, ...] = ("memory_used_bytes",)
STUCK_WEIGHT = 1.0
_CLIP_Z = 6.0
_NORMAL = NormalDist()


class StuckRun:
    """How surprising the current run of exact repeats of a whole sample is.

    A live VM's samples almost never repeat exactly in every metric at once; an agent that is
    stuck re-sends the same sample. With ``q`` the VM's own rate of such all-repeat steps (an
    exponentially weighted mean, floored at ``floor`` so that a VM that never repeats still needs
    a few repeats) and ``k`` the length of the current run, the chance of a run this long is
    ``q ** k``; :meth:`z` is the normal z-score with that upper tail. A VM whose metrics sit at
    exact zeros half the time has a high ``q`` and needs a much longer run.

    >>> run = StuckRun()
    >>> for i in range(300):
    ...     run.learn_one(i % 50 == 0)
    >>> [round(run.z(k), 1) for k in (0, 1, 3, 5)]
    [0.0, 2.1, 4.3, 5.8]
    """

    __slots__ = ("floor", "k", "rate")

    def __init__(self, halflife: float = 2000.0, floor: float = 1e-3) -> None:
        self.rate = EWStats(halflife)
        self.floor = floor
        self.k = 0

    def z(self, k: int) -> float:
        """The z-score of a run of ``k`` all-repeat steps (0 for none)."""
        if k <= 0:
            return 0.0
        tail = min(max(self.rate.mean, self.floor), 0.99) ** k
        return max(0.0, -_NORMAL.inv_cdf(tail)) if tail > 1e-300 else 37.0

    def learn_one(self, repeated: bool) -> None:
        self.rate.update(1.0 if repeated else 0.0)
        self.k = self.k + 1 if repeated else 0

    def __getstate__(self) -> tuple[EWStats, float, int]:
        return (self.rate, self.floor, self.k)

    def __setstate__(self, s: tuple[EWStats, float, int]) -> None:
        self.rate, self.floor, self.k = s


@dataclass
class Verdict:
    """What the detector thinks of one VM sample."""

    score: float
    metric: str = ""
    kind: str = ""
    #: the side the winning evidence points to: +1 up, -1 down (see SeriesDetector.directions)
    direction: float = 0.0
    #: weighted z-score of each (metric, kind) pair; kinds "rarity" and "stuck" have metric "*"
    evidence: dict[tuple[str, str], float] = field(default_factory=dict)


class VMDetector:
    """Online anomaly score for a VM's metrics (see the module docstring).

    Parameters
    ----------
    metrics
        The metric names to watch (the keys of the samples given to it).
    n_trees, height, window_size
        Shape of the half-space trees; 3 trees of height 6 keep them near 15 KB.
    seed
        Seed of the trees.
    trend_metrics
        The metrics whose sustained growth is evidence too (``trend``): memory, where it is
        how a leak shows.
    """

    def __init__(self, metrics: tuple[str, ...] = METRIC_FIELDS, *, n_trees: int = 3,
                 height: int = 6, window_size: int = 100, seed: int = 42,
                 trend_metrics: tuple[str, ...] = TREND_METRICS) -> None:
        self.metrics = metrics
        self.series = {m: SeriesDetector(trend=m in trend_metrics) for m in metrics}
        self.trees = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height,
                                            window_size=window_size, seed=seed)
        self.rarity = Likelihood()
        self.stuck = StuckRun()
        self.n = 0
        self._rarity_raw = 0.0

    def _shape(self, values: Mapping[str, float]) -> dict[str, float]:
        out = {}
        for m, det in self.series.items():
            mean = det.slow.mean
            z = (values.get(m, mean) - mean) / det.scale()
            out[m] = min(max(z, -_CLIP_Z), _CLIP_Z) / (2 * _CLIP_Z) + 0.5
        return out

    @property
    def ready(self) -> bool:
        return all(d.ready for d in self.series.values())

    def score_one(self, timestamp: float, values: Mapping[str, float]) -> Verdict:
        """Score a sample (a dict of metric values) before learning it."""
        evidence: dict[tuple[str, str], float] = {}
        directions = {}
        for m, det in self.series.items():
            if m not in values:
                continue
            det.score_one(timestamp, values[m])
            directions[m] = det.direction
            for kind, z in det.last_evidence.items():
                evidence[(m, kind)] = WEIGHTS[kind] * z
        window = self.trees.window_size
        self._rarity_raw = float(self.trees.score_one(self._shape(values))) \
            if self.n >= window else 0.0
        ready = self.ready  # unchanged by scoring: asked once
        if ready and self.n >= 2 * window:
            evidence[("*", "rarity")] = RARITY_WEIGHT * self.rarity.score_one(self._rarity_raw)
        if ready and len(self.series) >= 2:
            run = self.stuck.k + 1 if self._repeats(values) else 0
            evidence[("*", "stuck")] = STUCK_WEIGHT * self.stuck.z(run)
        if not evidence or not ready:
            return Verdict(score=0.0, evidence=evidence)
        metric, kind = max(evidence, key=evidence.__getitem__)  # the first of the strongest
        best = evidence[(metric, kind)]
        if metric == "*":  # joint shape or stuck agent: name the metric furthest from baseline
            shape = self._shape(values)
            metric = max(directions, key=lambda m: abs(shape[m] - 0.5))
        if metric in directions and kind in self.series[metric].last_evidence:
            # the side this metric's evidence of this kind points to
            det = self.series[metric]
            direction = det.directions.get(kind, det.direction)
        else:
            direction = directions.get(metric, 0.0)
        return Verdict(score=squash(best), metric=metric, kind=kind, direction=direction,
                       evidence=evidence)

    def _repeats(self, values: Mapping[str, float]) -> bool:
        """True when every watched metric (two at least) repeats its last value exactly."""
        seen = 0
        for m, det in self.series.items():
            if m in values:
                if values[m] != det.last:
                    return False
                seen += 1
        return seen >= 2

    def learn_one(self, timestamp: float, values: Mapping[str, float]) -> None:
        """Learn a sample (after :meth:`score_one` on it)."""
        if self.n >= 2 * self.trees.window_size:
            self.rarity.learn_one(self._rarity_raw)
        if len(self.series) >= 2:
            self.stuck.learn_one(self._repeats(values))
        shape = self._shape(values)
        if not self.trees.trees:
            hst_state.build_like(self.trees, shape)
        self.trees.learn_one(shape)
        for m, det in self.series.items():
            if m in values:
                det.learn_one(timestamp, values[m])
        self.n += 1

    def __getstate__(self) -> dict[str, object]:
        # The trees as arrays (agents.anomaly.hst_state): most of a VM's state, and far
        # slower to pickle as the node objects they are.
        state = dict(self.__dict__)
        if self.trees.trees:
            state["trees"] = hst_state.pack(self.trees)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        # Detectors pickled before ``stuck`` existed load with a fresh one; trees pickled
        # before they were packed load as they are.
        self.__dict__.update(state)
        self.__dict__.setdefault("stuck", StuckRun())
        if isinstance(self.trees, tuple):
            self.trees = hst_state.unpack(self.trees)

    def explain(self, values: Mapping[str, float], top: int = 3,
                focus: str = "") -> list[FeatureContribution]:
        """The ``top`` metrics furthest from their baseline (slow mean), in spreads; the
        ``focus`` metric (the one whose evidence raised the alert) first."""
        out = []
        for m, det in self.series.items():
            if m not in values:
                continue
            z = (values[m] - det.slow.mean) / det.scale()
            out.append(FeatureContribution(name=m, value=float(values[m]),
                                           baseline=round(det.slow.mean, 6),
                                           zscore=round(max(min(z, 1e6), -1e6), 3)))
        out.sort(key=lambda c: (c.name != focus, -abs(c.zscore)))
        return out[:top]


def score_series_vm(timestamps: list[float], values: list[float]) -> list[float]:
    """NAB's univariate series through the per-VM detector with one metric, ``value``."""
    det = VMDetector(metrics=("value",))
    out = []
    for t, v in zip(timestamps, values, strict=True):
        x = {"value": v}
        out.append(det.score_one(t, x).score)
        det.learn_one(t, x)
    return [s if math.isfinite(s) else 0.0 for s in out]
