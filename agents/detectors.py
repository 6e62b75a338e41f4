"""Per-VM anomaly detection on the windowed features.

:class:`VMAnomalyDetector` scores a VM's feature vector with River's half-space trees on
min-max scaled inputs, flags a score above a running quantile of the VM's own past scores,
and explains a flag by the metrics furthest from the VM's running baseline. Small by design:
a few tens of kilobytes per VM (River's HalfSpaceTrees at its default height of 15 would take
hundreds of megabytes each).

>>> import random
>>> rng = random.Random(7)
>>> det = VMAnomalyDetector(warmup_events=50, seed=1)
>>> for _ in range(300):
...     x = {"cpu_pct.sliding.last": rng.gauss(20, 2), "net_rx_bytes_per_s.sliding.last": 1e5}
...     det.learn_one(x)
>>> det.is_anomalous(det.score_one({"cpu_pct.sliding.last": 95.0,
...                                 "net_rx_bytes_per_s.sliding.last": 1e5}))
True
>>> det.explain({"cpu_pct.sliding.last": 95.0, "net_rx_bytes_per_s.sliding.last": 1e5})[0].name
'cpu_pct.sliding.last'
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from river import anomaly, preprocessing, stats

from schemas.records import FeatureContribution

DETECTOR_NAME = "hst-minmax-quantile"

#: Features the detector looks at: the level and spread of each metric in the sliding window.
DETECTOR_FEATURES: tuple[str, ...] = tuple(
    f"{m}.sliding.{s}"
    for m in ("cpu_pct", "memory_used_bytes", "disk_read_bytes_per_s", "disk_write_bytes_per_s",
              "net_rx_bytes_per_s", "net_tx_bytes_per_s")
    for s in ("last", "mean", "std")
)


class VMAnomalyDetector:
    """Half-space trees + a per-VM adaptive threshold + z-score explanations.

    Parameters
    ----------
    n_trees, height, window_size
        Half-space tree shape. 5 trees of height 6 keep the model near 25 KB pickled.
    quantile
        A score above this running quantile of the VM's past scores is anomalous.
    warmup_events
        Scores the threshold must have seen before any event can be anomalous. The trees
        score everything 0 until their first reference window (``window_size`` events) is
        full, so those scores are not counted.
    """

    def __init__(self, *, n_trees: int = 5, height: int = 6, window_size: int = 50,
                 quantile: float = 0.995, warmup_events: int = 48, seed: int = 42) -> None:
        self.model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed)
        self.threshold = stats.Quantile(quantile)
        self.warmup_events = warmup_events
        self.window_size = window_size
        self.n_learned = 0
        self.n_scored = 0
        self.baseline: dict[str, stats.Var] = {}

    @staticmethod
    def _select(x: Mapping[str, float]) -> dict[str, float]:
        return {k: x[k] for k in DETECTOR_FEATURES if k in x}

    def score_one(self, x: Mapping[str, float]) -> float:
        """Anomaly score in [0, 1]; higher is more anomalous."""
        return float(self.model.score_one(self._select(x)))

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn one feature vector (and its score, for the threshold)."""
        xs = self._select(x)
        if self.n_learned >= self.window_size:
            self.threshold.update(float(self.model.score_one(xs)))
            self.n_scored += 1
        self.model.learn_one(xs)
        for k, v in xs.items():
            self.baseline.setdefault(k, stats.Var()).update(v)
        self.n_learned += 1

    @property
    def current_threshold(self) -> float:
        value = self.threshold.get()
        return float(value) if value is not None else 1.0

    def is_anomalous(self, score: float) -> bool:
        return self.n_scored >= self.warmup_events and score > self.current_threshold

    def explain(self, x: Mapping[str, float], top: int = 3) -> list[FeatureContribution]:
        """The ``top`` features furthest from the VM's baseline, in standard deviations."""
        out = []
        for k, var in self.baseline.items():
            if k not in x:
                continue
            mean = var.mean.get()
            sd = math.sqrt(max(var.get(), 0.0))
            z = (x[k] - mean) / sd if sd > 1e-9 else (0.0 if x[k] == mean else math.copysign(
                99.0, x[k] - mean))
            out.append(FeatureContribution(name=k, value=float(x[k]), baseline=float(mean),
                                           zscore=round(float(z), 3)))
        out.sort(key=lambda c: abs(c.zscore), reverse=True)
        return out[:top]


def classify(contributions: list[FeatureContribution], x: Mapping[str, float]) -> str:
    """Name the anomaly from the metric that explains it best (refined by later detectors).

    >>> classify([FeatureContribution("disk_read_bytes_per_s.sliding.last", 9e6, 1e5, 12.0)], {})
    'io_bottleneck'
    """
    stds = [x.get(f"{m}.sliding.std", 1.0) for m in ("cpu_pct", "memory_used_bytes",
                                                       "net_rx_bytes_per_s")]
    if x.get("window.sliding.count", 0.0) >= 3 and all(s == 0.0 for s in stds):
        return "flatline"
    if not contributions:
        return "unknown"
    metric = contributions[0].name.split(".", 1)[0]
    if metric == "cpu_pct":
        return "cpu_spike"
    if metric == "memory_used_bytes":
        return "memory_leak" if x.get("memory_used_bytes.sliding.slope_per_s", 0.0) > 0 else \
            "unknown"
    if metric.startswith("disk_"):
        return "io_bottleneck"
    if metric.startswith("net_"):
        return "network_saturation"
    return "unknown"
