"""Anomaly classes on real traces: inject labelled anomalies into Bitbrains VMs, run the
service's pipeline over them, score detection (recall) and naming (accuracy, precision).

    python bench/anomaly_classes.py [--data ../shared/data/bitbrains_rnd] [--vms 16]
                                    [--days 10] [--rounds 3] [--seed 0] [--jobs 2]
                                    [--out bench/results/anomaly_classes.json]

For each VM, the first ``--days`` days of its real trace are replayed ``--rounds`` times, each
time with a fresh pipeline state and different injections (:mod:`bench.inject`; the round's
random generator is seeded from ``--seed``, the VM and the round, so results do not depend on
``--jobs``). After a 2-day warm-up, episodes of the five injected classes follow each other in
a shuffled order, 1-1.5 days apart (from the end of one to the start of the next), never across
a hole in the trace. Every sample, altered or not, goes through
``agents.pipeline.process_event`` with the default ``PipelineConfig``: the agent's own code path.
An *incident* is an alert with status ``open``.

Matching: an incident whose start lies in ``[start_ts, end_ts + 1 h]`` of an injected anomaly
matches it (episodes are a day apart, so at most one). Then

* **recall** of class C = injected anomalies of class C matched by at least one incident /
  injected anomalies of class C;
* **accuracy** = detected injected anomalies whose *first* matching incident has the injected
  class / detected injected anomalies (the class an operator is shown first; a second incident
  of the right class later in the episode does not repair a wrong first one);
* **precision** of class C = incidents of class C that match an injected anomaly of class C /
  incidents of class C that match any injected anomaly (every matching incident counts, not only
  the first). Incidents that match no injection come from the real trace, whose anomalies are
  unlabelled: they count in no precision; their number per class is reported as
  ``unlabelled_incidents`` in the details file. ``unknown`` is never injected: its recall is
  ``null`` and its precision is 0 when some incident matching an injection was named
  ``unknown`` (``null`` when none was).

Real rows the worker would dead-letter (a few say 0 bytes of memory provisioned) are dropped
before injecting; every altered row goes through the worker's validator too (``dead_letters``
in the details: 0 when every injector respects the schema).

Writes ``{"accuracy": a, "classes": {C: {"precision": p, "recall": r}}}`` to ``--out`` and the
counts, the confusion matrix of first incidents, the median delay to the first incident, the
per-injection records, the unlabelled incidents (``[vm, round, start, class, score]``) and
timings to ``<out stem>_details.json`` beside it; the table goes to stdout, progress to stderr.
16 VMs x 10 days x 3 rounds (~137,000 samples) take 1-1.5 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents.anomaly.classify import CLASSES  # noqa: E402
from agents.anomaly.incidents import IncidentTracker  # noqa: E402
from agents.pipeline import PipelineConfig, new_state, process_event  # noqa: E402
from bench.inject import INJECTED_CLASSES, Label, Row, draw_duration, inject, span  # noqa: E402
from schemas.records import MetricEvent  # noqa: E402
from schemas.validate import Rejected, decode_metric  # noqa: E402
from streams.traces import bitbrains_files, read_vm, vm_identity  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bitbrains_rnd"
DEFAULT_OUT = ROOT / "bench" / "results" / "anomaly_classes.json"
DAY_S = 86400.0
WARMUP_S = 2 * DAY_S
GAP_S = (1.0 * DAY_S, 1.5 * DAY_S)
GRACE_S = 3600.0
MAX_STEP_S = 900.0  # a hole longer than this ends a contiguous stretch
#: The alert thresholds of the budget curve.
CURVE = (0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


@dataclass(frozen=True)
class Incident:
    vm_id: str
    started_at: float
    anomaly_class: str
    score: float


@dataclass
class RunResult:
    vm_number: int
    round: int
    labels: list[Label]
    incidents: list[Incident]
    samples: int
    seconds: float
    dead_letters: int = 0
    #: VM-days after the warm-up (what unlabelled incidents are counted over)
    vm_days: float = 0.0
    #: when the warm-up ended
    scored_from: float = 0.0
    #: every sample's detection: (timestamp, score, flatline, class if it opened an incident)
    detections: list[tuple[float, float, bool, str]] = field(default_factory=list)


def decode(row: Row) -> MetricEvent | Rejected:
    """``row`` through the worker's validator, as if it came from Kafka."""
    return decode_metric(orjson.dumps(row), now=float(row["timestamp"]))


def load_vm(files: list[Path], vm_number: int, days: float) -> list[Row]:
    """The first ``days`` days of one VM's trace, without the samples the worker would
    dead-letter (a few real rows say 0 bytes of memory provisioned)."""
    rows: list[Row] = []
    for msg in read_vm(files, vm_number):
        if rows and msg["timestamp"] >= rows[0]["timestamp"] + days * DAY_S:
            break
        if not isinstance(decode(msg), Rejected):
            rows.append(msg)
    return rows


def schedule(rows: list[Row], rng: random.Random, step_s: float = 300.0
             ) -> tuple[list[Row], list[Label]]:
    """Inject episodes of every class, in shuffled cycles, after the warm-up (see the module
    docstring); returns the altered rows and the labels in time order."""
    ts = [float(r["timestamp"]) for r in rows]
    if not ts:
        return rows, []
    order: list[str] = []
    labels: list[Label] = []
    t = ts[0] + WARMUP_S + rng.uniform(0.0, GAP_S[1] - GAP_S[0])
    i = next((k for k, x in enumerate(ts) if x >= t), len(ts))
    while i < len(ts):
        if not order:
            order = list(INJECTED_CLASSES)
            rng.shuffle(order)
        cls = order[0]
        duration = draw_duration(cls, rng, step_s)
        n = span(cls, duration)
        stop = i + n + int(GRACE_S / step_s) + 1
        if stop >= len(ts):
            break
        hole = next((k for k in range(i - 1, stop) if ts[k + 1] - ts[k] > MAX_STEP_S), None)
        if hole is not None:  # restart after the hole, with a day to settle
            i = next((k for k, x in enumerate(ts) if x >= ts[hole + 1] + GAP_S[0]), len(ts))
            continue
        rows, label = inject(cls, rows, i, duration, rng)
        labels.append(label)
        order.pop(0)
        t = label.end_ts + rng.uniform(*GAP_S)
        i = next((k for k in range(i, len(ts)) if ts[k] >= t), len(ts))
    return rows, labels


def run_vm(data: Path, vm_number: int, rnd: int, days: float, seed: int,
           threshold: float = PipelineConfig.alert_threshold) -> RunResult:
    """One VM, one round: inject, replay through the pipeline, collect opened incidents and
    every sample's detection."""
    started = time.perf_counter()
    files = bitbrains_files(data)[vm_number]
    rows = load_vm(files, vm_number, days)
    rng = random.Random(f"{seed}/{vm_number}/{rnd}")
    rows, labels = schedule(rows, rng)
    cfg = PipelineConfig(alert_threshold=threshold)
    state = new_state(cfg)
    incidents = []
    detections = []
    dead = 0
    for row in rows:
        ev = decode(row)
        if isinstance(ev, Rejected):  # an injector broke the schema: counted, reported
            dead += 1
            continue
        out = process_event(state, ev, cfg)
        incidents += [Incident(a.vm_id, a.started_at, a.anomaly_class, a.score)
                      for a in out.alerts if a.status == "open"]
        if out.detection is not None:
            d = out.detection
            detections.append((ev.timestamp, d.score, d.flatline, d.anomaly_class))
    scored_from = float(rows[0]["timestamp"]) + WARMUP_S if rows else 0.0
    vm_days = max(0.0, float(rows[-1]["timestamp"]) - scored_from) / DAY_S if rows else 0.0
    return RunResult(vm_number, rnd, labels, incidents, len(rows),
                     time.perf_counter() - started, dead, vm_days, scored_from, detections)


def match(labels: Sequence[Label], incidents: Sequence[Incident]
          ) -> tuple[list[list[Incident]], list[Incident]]:
    """Incidents matching each label (in time order) and those matching none."""
    matched: list[list[Incident]] = [[] for _ in labels]
    unlabelled = []
    for inc in sorted(incidents, key=lambda x: x.started_at):
        hit = next((k for k, lb in enumerate(labels)
                    if lb.vm_id == inc.vm_id
                    and lb.start_ts <= inc.started_at <= lb.end_ts + GRACE_S), None)
        if hit is None:
            unlabelled.append(inc)
        else:
            matched[hit].append(inc)
    return matched, unlabelled


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def score(results: Sequence[RunResult]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The summary (``accuracy``, per-class precision and recall) and the details."""
    injected: Counter[str] = Counter()
    detected: Counter[str] = Counter()
    right: Counter[str] = Counter()
    named: Counter[str] = Counter()  # matching incidents per class
    named_right: Counter[str] = Counter()
    unlabelled: Counter[str] = Counter()
    confusion: dict[str, Counter[str]] = {c: Counter() for c in INJECTED_CLASSES}
    records = []
    delays: dict[str, list[float]] = {c: [] for c in INJECTED_CLASSES}
    unlabelled_list = []
    for res in results:
        matched, rest = match(res.labels, res.incidents)
        unlabelled.update(inc.anomaly_class for inc in rest)
        unlabelled_list += [[inc.vm_id, res.round, inc.started_at, inc.anomaly_class, inc.score]
                            for inc in rest]
        for label, incs in zip(res.labels, matched, strict=True):
            cls = label.anomaly_class
            injected[cls] += 1
            first = incs[0].anomaly_class if incs else "missed"
            confusion[cls][first] += 1
            if incs:
                detected[cls] += 1
                right[cls] += first == cls
                delays[cls].append(incs[0].started_at - label.start_ts)
            for inc in incs:
                named[inc.anomaly_class] += 1
                named_right[inc.anomaly_class] += inc.anomaly_class == cls
            records.append({**asdict(label), "round": res.round,
                            "incidents": [[inc.started_at, inc.anomaly_class, inc.score]
                                          for inc in incs]})
    classes = {}
    for c in CLASSES:
        classes[c] = {"precision": _ratio(named_right[c], named[c]),
                      "recall": _ratio(detected[c], injected[c]) if c in injected else None}
    vm_days = sum(r.vm_days for r in results)
    late = sum(1 for res in results for inc in match(res.labels, res.incidents)[1]
               if inc.started_at >= res.scored_from)
    summary = {"accuracy": _ratio(sum(right.values()), sum(detected.values())),
               "classes": classes,
               "unlabelled_per_vm_day": round(late / vm_days, 4) if vm_days else None}
    details = {
        "counts": {c: {"injected": injected[c], "detected": detected[c],
                       "first_incident_right": right[c], "matching_incidents": named[c],
                       "matching_incidents_right": named_right[c],
                       "unlabelled_incidents": unlabelled[c]} for c in CLASSES},
        "unlabelled_incidents": {c: unlabelled[c] for c in CLASSES},
        "confusion_first_incident": {c: dict(confusion[c]) for c in INJECTED_CLASSES},
        "median_delay_s": {c: sorted(d)[len(d) // 2] if d else None for c, d in delays.items()},
        "injections": records,
        "unlabelled": unlabelled_list,
        "vm_days_after_warmup": round(vm_days, 2),
    }
    return summary, details


def incidents_at(res: RunResult, threshold: float, resolve_after: int) -> list[Incident]:
    """The incidents the pipeline would have opened on ``res``'s samples at ``threshold``
    (the same tracker, fed the recorded detections; without feedback nothing else depends on
    the threshold)."""
    tracker = IncidentTracker(resolve_after=resolve_after)
    vm_id = vm_identity(res.vm_number)[0]
    out = []
    for ts, score_, flat, cls in res.detections:
        change = tracker.observe(vm_id, ts, score_ >= threshold or flat, cls, "low", score_)
        if change is not None and change.status == "open":
            out.append(Incident(vm_id, ts, cls, score_))
    return out


def budget_curve(results: Sequence[RunResult], thresholds: Sequence[float],
                 resolve_after: int) -> list[dict[str, Any]]:
    """Per alert threshold: unlabelled incidents per VM-day after the warm-up, the recall of
    each injected class and the accuracy, all from the recorded detections."""
    rows = []
    for thr in thresholds:
        replayed = [RunResult(r.vm_number, r.round, r.labels, incidents_at(r, thr, resolve_after),
                              r.samples, r.seconds, r.dead_letters, r.vm_days, r.scored_from)
                    for r in results]
        summary, _ = score(replayed)
        rows.append({"threshold": thr,
                     "unlabelled_per_vm_day": summary["unlabelled_per_vm_day"],
                     "accuracy": summary["accuracy"],
                     "recall": {c: summary["classes"][c]["recall"] for c in INJECTED_CLASSES}})
    return rows


def format_curve(curve: list[dict[str, Any]], chosen: float) -> str:
    head = f"{'threshold':>9}  {'unlabelled/VM-day':>17}  {'accuracy':>8}  " + "  ".join(
        f"{c[:10]:>10}" for c in INJECTED_CLASSES)
    lines = [head, "-" * len(head)]
    for row in curve:
        mark = "  <- the service's default" if row["threshold"] == chosen else ""
        lines.append(f"{row['threshold']:>9.2f}  {row['unlabelled_per_vm_day']:>17.3f}  "
                     f"{100 * (row['accuracy'] or 0):>7.1f}%  " + "  ".join(
                         f"{100 * (row['recall'][c] or 0):>9.1f}%" for c in INJECTED_CLASSES)
                     + mark)
    return "\n".join(lines)


def format_table(summary: dict[str, Any], details: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "   -  " if x is None else f"{100 * x:5.1f}%"

    head = (f"{'class':<20}{'injected':>9}{'detected':>9}{'recall':>8}{'right':>7}"
            f"{'precision':>10}{'unlabelled':>11}  first incident named")
    lines = [head, "-" * len(head)]
    for c, v in summary["classes"].items():
        n = details["counts"][c]
        conf = details["confusion_first_incident"].get(c, {})
        named = ", ".join(f"{k} {x}" for k, x in sorted(conf.items(), key=lambda kv: -kv[1]))
        lines.append(f"{c:<20}{n['injected']:>9}{n['detected']:>9}{pct(v['recall']):>8}"
                     f"{n['first_incident_right']:>7}{pct(v['precision']):>10}"
                     f"{n['unlabelled_incidents']:>11}  {named}")
    lines.append(f"accuracy (first matching incident has the injected class): "
                 f"{pct(summary['accuracy']).strip()}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--vms", type=int, default=16, help="the first N VMs")
    parser.add_argument("--days", type=float, default=10.0, help="days of each VM's trace")
    parser.add_argument("--rounds", type=int, default=3,
                        help="replays of each VM, each with other injections")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threshold", type=float, default=PipelineConfig.alert_threshold,
                        help="the pipeline's alert threshold (default: the service's)")
    parser.add_argument("--curve", default=",".join(str(t) for t in CURVE),
                        help="alert thresholds of the budget curve (comma-separated)")
    args = parser.parse_args(argv)
    try:
        curve_thresholds = sorted({float(t) for t in args.curve.split(",") if t.strip()})
    except ValueError:
        parser.error(f"--curve: expected comma-separated numbers, got {args.curve!r}")

    started = time.perf_counter()
    vms = sorted(bitbrains_files(args.data, args.vms))
    tasks = [(args.data, n, r, args.days, args.seed, args.threshold)
             for n in vms for r in range(args.rounds)]
    results: list[RunResult] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_vm, *t) for t in tasks]
        for k, fut in enumerate(futures, 1):
            res = fut.result()
            results.append(res)
            print(f"[{k}/{len(tasks)}] vm {res.vm_number} round {res.round}: "
                  f"{res.samples} samples, {len(res.labels)} injected, "
                  f"{len(res.incidents)} incidents ({res.seconds:.1f}s)", file=sys.stderr)
    summary, details = score(results)
    resolve_after = PipelineConfig().resolve_after_events
    curve = budget_curve(results, curve_thresholds, resolve_after)
    details["budget_curve"] = curve
    elapsed = time.perf_counter() - started
    details = {"config": {"data": str(args.data), "vms": len(vms), "days": args.days,
                          "rounds": args.rounds, "seed": args.seed, "grace_s": GRACE_S,
                          "warmup_s": WARMUP_S, "gap_s": list(GAP_S),
                          "pipeline": asdict(PipelineConfig(alert_threshold=args.threshold))},
               "seconds": round(elapsed, 1),
               "samples": sum(r.samples for r in results),
               "dead_letters": sum(r.dead_letters for r in results), **details}
    print(format_table(summary, details))
    print(f"unlabelled incidents per VM-day after the warm-up: "
          f"{summary['unlabelled_per_vm_day']}")
    print("\nalert budget (incidents the same detections open at other thresholds):")
    print(format_curve(curve, args.threshold))
    print(f"({sum(r.samples for r in results)} samples, {elapsed:.1f}s)", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    detail_path = args.out.with_name(f"{args.out.stem}_details.json")
    detail_path.write_text(json.dumps(details, indent=1) + "\n")
    print(f"wrote {args.out} and {detail_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
