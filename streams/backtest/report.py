"""The backtest's numbers (``metrics.json``) and its page (``report.md``).

Definitions, as the report states them:

* **Incidents** are counted once each, by class and by the highest severity they reached.
* **NAB-style score** (files with label windows): each incident's opening is a detection,
  scored by NAB's rules (:mod:`streams.backtest.nab_scoring`) at the service's configured
  alert threshold, not at a threshold tuned on the labels: what an operator running this
  configuration would have got. A window is *detected* when an incident opened inside it; a
  *false positive* is an opening outside every window, after NAB's probation (the first 15 %
  of a file).
* **Forecast accuracy**, per metric and horizon: WAPE (sum |forecast - actual| / sum
  |actual|) and the share of actuals inside the 90 % interval, each forecast scored against
  the sample nearest its target time (within half the VM's step).
* **Scaling** (VMs with cpu and memory): after a one-day warm-up per VM, *slack* is
  sum(allocated - used) / sum(allocated), *shortfall* the share of samples where use exceeded
  the allocation, *changes* the allocation changes per VM-day; the recorded provisioning
  (``static``) is the baseline.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from streams.backtest.allocation import Tally, score
from streams.backtest.engine import ForecastTally, SeriesResult
from streams.backtest.nab_scoring import (
    NAB_PROFILES,
    Corpus,
    FloatArray,
    Series,
    probationary_length,
)

CLASSES = ("cpu_spike", "memory_leak", "io_bottleneck", "network_saturation", "flatline",
           "unknown")
SEVERITIES = ("low", "medium", "high", "critical")
WARMUP_S = 86400.0


def _r(x: float, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


def detections(r: SeriesResult) -> FloatArray:
    """1.0 on the rows where an incident opened, else 0 (a NAB score column)."""
    out = np.zeros(r.rows)
    for inc in r.incidents:
        out[inc.open_row] = 1.0
    return out


def window_hits(r: SeriesResult) -> tuple[int, int]:
    """(windows with an incident opening inside, openings outside every window after
    NAB's probation)."""
    opens = [inc.open_row for inc in r.incidents]
    hit = sum(1 for a, b in r.windows if any(a <= i <= b for i in opens))
    probation = probationary_length(r.rows)
    false = sum(1 for i in opens if i >= probation and
                not any(a <= i <= b for a, b in r.windows))
    return hit, false


def nab_scores(results: Sequence[SeriesResult]) -> dict[str, Any] | None:
    """NAB-style scores of the incidents on the labelled series (None without labels)."""
    labelled = [r for r in results if r.labelled and r.rows]
    if not labelled or not any(r.windows for r in labelled):
        return None
    corpus = Corpus([Series(r.key, r.t, r.values[r.metric], tuple(r.windows))
                     for r in labelled])
    scores = {r.key: detections(r) for r in labelled}
    hits = [window_hits(r) for r in labelled]
    profiles = {}
    for name in NAB_PROFILES:
        profiles[name] = {"score": _r(corpus.score_at(scores, name, 0.5), 1),
                          "raw": _r(corpus.raw_score_at(scores, name, 0.5), 3)}
    return {"series": len(labelled), "windows": corpus.n_windows,
            "windows_detected": sum(h for h, _ in hits),
            "false_positives": sum(f for _, f in hits), "profiles": profiles}


def _allocation(t: Tally) -> dict[str, float | None]:
    return {"slack": _r(t.slack), "shortfall": _r(t.shortfall),
            "changes_per_vm_day": _r(t.changes_per_vm_day, 3)}


def scaling(results: Sequence[SeriesResult]) -> dict[str, Any] | None:
    vms = [r for r in results if r.kind == "vm"]
    if not vms:
        return None
    out: dict[str, Any] = {"vms": len(vms),
                           "recommendations": dict(Counter(str(rec["action"]) for r in vms
                                                           for rec in r.recommendations))}
    for resource, used, alloc, prov in (
            ("cpu", "cpu_cores_used", "allocated_cores", "provisioned_cores"),
            ("memory", "memory_used_bytes", "allocated_bytes", "provisioned_bytes")):
        ours, static = Tally(), Tally()
        for r in vms:
            if not r.rows:
                continue
            scored_from = float(r.t[0]) + WARMUP_S
            ours.merge(score(r.t, r.values[used], r.values[alloc], scored_from))
            static.merge(score(r.t, r.values[used], r.values[prov], scored_from))
        out[resource] = {"recommended": _allocation(ours), "static": _allocation(static)}
    return out


def forecast_accuracy(results: Sequence[SeriesResult]) -> dict[str, dict[str, Any]]:
    totals: dict[str, dict[float, ForecastTally]] = {}
    for r in results:
        for metric, per_h in r.accuracy.items():
            for h, tally in per_h.items():
                totals.setdefault(metric, {}).setdefault(h, ForecastTally()).merge(tally)
    return {metric: {f"{h:g}": {"n": t.n, "wape": _r(t.wape), "coverage_90": _r(t.coverage_90),
                                "mean_width_90": _r(t.width_90 / t.n if t.n else math.nan)}
                     for h, t in sorted(per_h.items())}
            for metric, per_h in sorted(totals.items())}


def incidents(results: Sequence[SeriesResult]) -> dict[str, Any]:
    by_class: dict[str, dict[str, int]] = {}
    durations = []
    for r in results:
        for inc in r.incidents:
            row = by_class.setdefault(inc.anomaly_class, dict.fromkeys(SEVERITIES, 0))
            row[inc.severity] = row.get(inc.severity, 0) + 1
            if inc.resolved_at is not None:
                durations.append(inc.resolved_at - inc.opened_at)
    total = sum(sum(v.values()) for v in by_class.values())
    samples = sum(r.rows for r in results)
    return {"total": total, "per_1k_samples": _r(1000.0 * total / samples if samples
                                                  else math.nan, 3),
            "by_class": by_class,
            "median_duration_s": _r(float(np.median(durations)) if durations else math.nan, 0)}


def per_series(results: Sequence[SeriesResult]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        hit, false = window_hits(r)
        first = min(r.accuracy.get(r.metric, {}).items(), default=None)
        rows.append({"name": r.name, "kind": r.kind, "metric": r.metric, "rows": r.rows,
                     "rows_rejected": sum(r.rejected.values()), "late_rows": r.late,
                     "incidents": len(r.incidents),
                     "windows": len(r.windows) if r.labelled else None,
                     "windows_detected": hit if r.labelled else None,
                     "false_positives": false if r.labelled else None,
                     "recommendations": len(r.recommendations) if r.kind == "vm" else None,
                     "wape": _r(first[1].wape) if first else None,
                     "source": r.source})
    return rows


def build_metrics(results: Sequence[SeriesResult], *, refused: Counter[str],
                  skipped: dict[str, str], label_files: Sequence[str], seconds: float,
                  command: str, settings: dict[str, Any]) -> dict[str, Any]:
    events = sum(r.rows for r in results) + sum(refused.values())
    rejected: Counter[str] = Counter()
    for r in results:
        rejected.update(r.rejected)
    rejected.update({f"refused: {k}": v for k, v in refused.items()})
    return {
        "command": command,
        "seconds": round(seconds, 1),
        "events": events,
        "events_per_s": round(events / seconds, 1) if seconds > 0 else None,
        "inputs": {"series": sum(1 for r in results if r.kind == "series"),
                   "vms": sum(1 for r in results if r.kind == "vm"),
                   "rows_rejected": dict(rejected),
                   "late_rows": sum(r.late for r in results),
                   "files_skipped": skipped, "label_files": list(label_files)},
        "settings": settings,
        "incidents": incidents(results),
        "nab": nab_scores(results),
        "forecast": forecast_accuracy(results),
        "scaling": scaling(results),
        "series": per_series(results),
    }
