"""Name an anomaly: which class of trouble a VM's verdict and features point to.

Rules on what the detector found (the metric and kind of evidence that won, and its direction)
and on the VM's windowed features. ``bench/anomaly_classes.py`` measures them on real traces
with injected anomalies of each class.

>>> from agents.anomaly.vm import Verdict
>>> classify(Verdict(0.6, "cpu_pct", "extreme", 1.0), {})
'cpu_spike'
>>> classify(Verdict(0.6, "disk_write_bytes_per_s", "shift", -1.0), {})
'io_bottleneck'
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
    flat = sum(1 for m in FLATLINE_METRICS
               if f"{m}.sliding.std" in features and features[f"{m}.sliding.std"] == 0.0)
    return flat >= FLATLINE_MIN_METRICS


def classify(verdict: Verdict, features: Mapping[str, float]) -> str:
    """One of :data:`CLASSES` for an anomalous verdict."""
    if is_flatline(features):
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
