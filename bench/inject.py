"""Inject labelled anomalies of each class into a real VM trace (a list of vm.metrics dicts).

Each injector takes the VM's samples in time order (``rows``: ``vm.metrics`` v1 dicts, e.g. from
:func:`streams.traces.read_vm`), the index of the first sample to alter (``start``), the number
of samples to alter (``duration``) and a :class:`random.Random`, and returns a modified copy of
``rows`` (the list and every altered dict are new; ``rows`` is left as it is) plus a
:class:`Label`. Only ``rows[start:start + span(cls, duration)]`` change (:func:`span` is
``duration`` except for a leak, whose hold follows its ramp), and the label spans exactly
those samples: ``start_ts`` is the timestamp of the first altered sample, ``end_ts`` that of the
last. Every altered sample stays inside the ``vm.metrics`` schema (``0 <= cpu_pct <= 100``,
``0 <= memory_used_bytes <= memory_total_bytes``, throughputs ``>= 0``). The real trace goes on
underneath wherever a signature does not replace it, so daily rhythm and noise remain.

The signatures (durations are drawn by :func:`draw_duration` from :data:`DURATIONS_S`):

``cpu_spike``
    ``cpu_pct`` at 90-100 % (each sample drawn uniformly; never below the real value) for 2-6
    samples (10-30 min at 5-min steps); nothing else changes.
``memory_leak``
    A slow, sustained leak: ``memory_used_bytes`` = real + a leaked amount that grows linearly
    from 0 to a fraction of ``memory_total_bytes`` drawn from 30-60 % over the ramp (6-24 h),
    then stays at that amount for a quarter of the ramp (``hold``; the leaked memory is not given
    back) before the process is restarted and the trace returns to its real values. The
    fraction is lowered if needed so that the VM's level at the start plus the leak stays at or
    below 98 % of the total; every sample is capped at the total.
``network_saturation``
    ``net_rx_bytes_per_s``, ``net_tx_bytes_per_s`` or both (one of the three, equally likely)
    pinned at a plateau of 20-50 x the larger of the metric's p99 over the samples before
    ``start`` and 64 KiB/s (at most a 10 Gbit/s link), with +-2 % jitter (never below the real
    value), for 1-4 h.
``io_bottleneck``
    Disk saturation, the definition used here: ``disk_write_bytes_per_s``,
    ``disk_read_bytes_per_s`` or both pinned at a plateau like the network's (20-50 x the
    larger of the p99 before ``start`` and 64 KiB/s, at most 2 GB/s, +-2 % jitter) for 1-4 h:
    a device or volume held at its ceiling by a write flood, a backup or a scan. (An IO *stall*,
    throughput collapsing to ~0 while the CPU stays busy, is not injected: on most real VMs
    disk throughput is already near 0 much of the time, so it has no visible signature here.)
``flatline``
    A stuck agent: every field (the six metrics, ``memory_total_bytes`` and ``vcpus``) frozen at
    the value of the sample before ``start`` for 1-6 h; timestamps keep advancing (the agent
    re-sends its last reading).

>>> import random
>>> rows = [{"vm_id": "vm-1", "host_id": "h", "timestamp": 300.0 * i, "cpu_pct": 10.0,
...          "memory_used_bytes": 1e9, "memory_total_bytes": 4e9, "vcpus": 2,
...          "disk_read_bytes_per_s": 0.0, "disk_write_bytes_per_s": 1e3,
...          "net_rx_bytes_per_s": 1e4, "net_tx_bytes_per_s": 2e4} for i in range(100)]
>>> out, label = inject("cpu_spike", rows, 50, 3, random.Random(0))
>>> label.anomaly_class, label.start_ts, label.end_ts
('cpu_spike', 15000.0, 15600.0)
>>> [r["cpu_pct"] >= 90 for r in out[49:54]], rows[50]["cpu_pct"]
([False, True, True, True, False], 10.0)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]
Injector = Callable[[Sequence[Row], int, int, random.Random], tuple[list[Row], "Label"]]

#: Classes that have an injector, in a fixed order (``unknown`` has none).
INJECTED_CLASSES: tuple[str, ...] = ("cpu_spike", "memory_leak", "io_bottleneck",
                                     "network_saturation", "flatline")
#: Range of each class's episode length, seconds (inclusive; for ``memory_leak``, the ramp).
DURATIONS_S: dict[str, tuple[float, float]] = {
    "cpu_spike": (2 * 300.0, 6 * 300.0),
    "memory_leak": (6 * 3600.0, 24 * 3600.0),
    "io_bottleneck": (3600.0, 4 * 3600.0),
    "network_saturation": (3600.0, 4 * 3600.0),
    "flatline": (3600.0, 6 * 3600.0),
}
PLATEAU_FACTOR = (20.0, 50.0)
PLATEAU_FLOOR = 64 * 1024.0
PLATEAU_JITTER = 0.02
NET_CEILING = 10e9 / 8  # a 10 Gbit/s link, bytes/s
DISK_CEILING = 2e9  # bytes/s
LEAK_FRACTION = (0.30, 0.60)
LEAK_MAX_LEVEL = 0.98
FROZEN_FIELDS = ("cpu_pct", "memory_used_bytes", "memory_total_bytes", "vcpus",
                 "disk_read_bytes_per_s", "disk_write_bytes_per_s", "net_rx_bytes_per_s",
                 "net_tx_bytes_per_s")


@dataclass(frozen=True)
class Label:
    """One injected anomaly: its class and the timestamps of its first and last samples."""

    anomaly_class: str
    start_ts: float
    end_ts: float
    vm_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)


def draw_duration(anomaly_class: str, rng: random.Random, step_s: float = 300.0) -> int:
    """A random episode length of ``anomaly_class`` in samples of ``step_s`` (at least 1)."""
    lo, hi = DURATIONS_S[anomaly_class]
    return max(1, rng.randint(math.ceil(lo / step_s), math.floor(hi / step_s)))


def _check(rows: Sequence[Row], start: int, duration: int, need_before: int = 0) -> None:
    if duration < 1 or start < need_before or start + duration > len(rows):
        raise ValueError(f"episode [{start}, {start + duration}) does not fit {len(rows)} rows"
                         f" (needs {need_before} before)")


def _label(cls: str, out: Sequence[Row], start: int, duration: int, **params: Any) -> Label:
    return Label(cls, float(out[start]["timestamp"]), float(out[start + duration - 1]["timestamp"]),
                 str(out[start].get("vm_id", "")), params)


def _altered(rows: Sequence[Row], start: int, duration: int) -> list[Row]:
    out = list(rows)
    for i in range(start, start + duration):
        out[i] = dict(rows[i])
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation; 0 when empty."""
    xs = sorted(values)
    if not xs:
        return 0.0
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (pos - lo) * (xs[hi] - xs[lo])


def cpu_spike(rows: Sequence[Row], start: int, duration: int, rng: random.Random
              ) -> tuple[list[Row], Label]:
    """CPU at 90-100 % for ``duration`` samples (see the module docstring)."""
    _check(rows, start, duration)
    out = _altered(rows, start, duration)
    for r in out[start:start + duration]:
        r["cpu_pct"] = min(100.0, max(float(r["cpu_pct"]), rng.uniform(90.0, 100.0)))
    return out, _label("cpu_spike", out, start, duration)


def memory_leak(rows: Sequence[Row], start: int, duration: int, rng: random.Random,
                hold: int | None = None) -> tuple[list[Row], Label]:
    """Memory grows linearly by 30-60 % of the total over ``duration`` samples, then stays for
    ``hold`` samples (default ``duration // 4``); the label covers ramp and hold."""
    hold = max(0, duration // 4 if hold is None else hold)
    _check(rows, start, duration + hold)
    out = _altered(rows, start, duration + hold)
    first = rows[start]
    total0 = float(first["memory_total_bytes"])
    headroom = LEAK_MAX_LEVEL - float(first["memory_used_bytes"]) / total0
    fraction = max(0.0, min(rng.uniform(*LEAK_FRACTION), headroom))
    for k, r in enumerate(out[start:start + duration + hold]):
        total = float(r["memory_total_bytes"])
        leaked = fraction * total0 * min(1.0, (k + 1) / duration)
        r["memory_used_bytes"] = min(total, float(r["memory_used_bytes"]) + leaked)
    return out, _label("memory_leak", out, start, duration + hold, fraction=fraction,
                       ramp_samples=duration, hold_samples=hold)


def _plateau(cls: str, metrics: tuple[str, str], ceiling: float, rows: Sequence[Row],
             start: int, duration: int, rng: random.Random) -> tuple[list[Row], Label]:
    _check(rows, start, duration, need_before=1)
    pick = rng.randrange(3)
    chosen = [metrics[0]] if pick == 0 else [metrics[1]] if pick == 1 else list(metrics)
    out = _altered(rows, start, duration)
    levels = {}
    for m in chosen:
        p99 = percentile([float(r[m]) for r in rows[:start]], 0.99)
        levels[m] = min(ceiling, rng.uniform(*PLATEAU_FACTOR) * max(p99, PLATEAU_FLOOR))
    for r in out[start:start + duration]:
        for m, level in levels.items():
            jittered = level * (1.0 + rng.uniform(-PLATEAU_JITTER, PLATEAU_JITTER))
            r[m] = min(ceiling, max(float(r[m]), jittered))
    return out, _label(cls, out, start, duration,
                       levels={m: round(v, 1) for m, v in levels.items()})


def network_saturation(rows: Sequence[Row], start: int, duration: int, rng: random.Random
                       ) -> tuple[list[Row], Label]:
    """Network rx and/or tx at a plateau of 20-50 x their p99 (see the module docstring)."""
    return _plateau("network_saturation", ("net_rx_bytes_per_s", "net_tx_bytes_per_s"),
                    NET_CEILING, rows, start, duration, rng)


def io_bottleneck(rows: Sequence[Row], start: int, duration: int, rng: random.Random
                  ) -> tuple[list[Row], Label]:
    """Disk write and/or read at a plateau of 20-50 x their p99 (see the module docstring)."""
    return _plateau("io_bottleneck", ("disk_write_bytes_per_s", "disk_read_bytes_per_s"),
                    DISK_CEILING, rows, start, duration, rng)


def flatline(rows: Sequence[Row], start: int, duration: int, rng: random.Random
             ) -> tuple[list[Row], Label]:
    """Every field frozen at the sample before ``start`` (a stuck agent)."""
    _check(rows, start, duration, need_before=1)
    out = _altered(rows, start, duration)
    frozen = {k: rows[start - 1][k] for k in FROZEN_FIELDS if k in rows[start - 1]}
    for r in out[start:start + duration]:
        r.update(frozen)
    return out, _label("flatline", out, start, duration)


INJECTORS: dict[str, Injector] = {
    "cpu_spike": cpu_spike,
    "memory_leak": memory_leak,
    "io_bottleneck": io_bottleneck,
    "network_saturation": network_saturation,
    "flatline": flatline,
}


def inject(anomaly_class: str, rows: Sequence[Row], start: int, duration: int,
           rng: random.Random) -> tuple[list[Row], Label]:
    """Apply the injector of ``anomaly_class`` (one of :data:`INJECTED_CLASSES`)."""
    return INJECTORS[anomaly_class](rows, start, duration, rng)


def span(anomaly_class: str, duration: int) -> int:
    """Samples an injection of ``duration`` alters (a leak's hold included)."""
    return duration + duration // 4 if anomaly_class == "memory_leak" else duration
