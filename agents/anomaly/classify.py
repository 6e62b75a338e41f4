"""Name an anomaly: which class of trouble a VM's verdict and features point to.

Rules on what the detector found (the metric and kind of evidence that won, and the side it
points to) and on the VM's windowed features, in this order:

1. ``flatline`` (a stuck or dead agent): the winning evidence is ``stuck`` (every metric has
   repeated its last value exactly for longer than the VM's own repeats make likely, see
   :class:`~agents.anomaly.vm.StuckRun`), or most metrics are perfectly flat over a sliding
   window of enough samples (:func:`is_flatline`; needs a short reporting interval);
2. ``cpu_spike``: CPU, up;
3. ``memory_leak``: memory, up (sustained growth wins as ``trend`` evidence; a jump as
   ``extreme`` or ``level``);
4. ``io_bottleneck``: disk read or write throughput, either way (a flood or a stall);
5. ``network_saturation``: network receive or transmit, up;
6. ``unknown``: anything else (CPU, memory or network falling).

``bench/anomaly_classes.py`` measures them on real traces with injected anomalies of each class.

>>> from agents.anomaly.vm import Verdict
>>> classify(Verdict(0.6, "cpu_pct", "extreme", 1.0), {})
'cpu_spike'
>>> classify(Verdict(0.6, "disk_write_bytes_per_s", "shift", -1.0), {})
'io_bottleneck'
>>> classify(Verdict(0.5, "memory_used_bytes", "stuck", 1.0), {})
'flatline'
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.anomaly.vm import Verdict

CLASSES = ("cpu_spike", "memory_leak", "io_bottleneck", "network_saturation", "flatline",
           "unknown")
#: Metrics whose sliding window must be perfectly flat for a flatline (a stuck agent).
FLATLINE_METRICS = ("cpu_pct", "memory_used_bytes", "disk_read_bytes_per_s",
                    "disk_write_bytes_per_s", "net_rx_bytes_per_s", "net_tx_bytes_per_s")
FLATLINE_MIN_SAMPLES = 6
FLATLINE_MIN_METRICS = 4


def is_flatline(features: Mapping[str, float]) -> bool:
    """True when most metrics have not moved at all over a sliding window of enough samples."""
    if features.get("window.sliding.count", 0.0) < FLATLINE_MIN_SAMPLES:
        return False
    # A streams.features.FeatureVector knows, without computing the window's statistics,
    # when a metric certainly moved (its std is not 0) and when it was exactly 0 all along
    # (its std is exactly 0); only the others need the statistic.
    moved = getattr(features, "surely_moved", None)
    zero = getattr(features, "surely_zero", None)
    flat = 0
    undecided = []
    for m, key in zip(FLATLINE_METRICS, _FLATLINE_STD_KEYS, strict=True):
        if moved is not None and moved(m):
            continue
        if zero is not None and zero(m):
            flat += 1
        else:
            undecided.append(key)
    if flat + len(undecided) < FLATLINE_MIN_METRICS:
        return False
    flat += sum(1 for key in undecided if key in features and features[key] == 0.0)
    return flat >= FLATLINE_MIN_METRICS


#: The features :func:`is_flatline` reads: each flatline metric's sliding std.
_FLATLINE_STD_KEYS = tuple(f"{m}.sliding.std" for m in FLATLINE_METRICS)


def classify(verdict: Verdict, features: Mapping[str, float]) -> str:
    """One of :data:`CLASSES` for an anomalous verdict."""
    if verdict.kind == "stuck" or is_flatline(features):
        return "flatline"
    metric, up = verdict.metric, verdict.direction > 0
    if metric == "cpu_pct" and up:
        return "cpu_spike"
    if metric == "memory_used_bytes" and up:
        return "memory_leak"
    if metric.startswith("disk_"):
        return "io_bottleneck"
    if metric.startswith("net_") and up:
        return "network_saturation"
    return "unknown"
