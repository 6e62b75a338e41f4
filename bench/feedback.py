"""Operator feedback on real traces: false positives drop, recall stays.

    python bench/feedback.py [--data ../shared/data/bitbrains_rnd] [--vms 8]
                             [--out bench/results/feedback.json] [--seed 7]
                             [--answers 3] [--feedback-days 7] [--jobs 2]

Replays the Bitbrains traces of ``--vms`` VMs, merged in time order, through
``agents.pipeline.process_event`` (the agent's own code path), with two kinds of injections
drawn per VM from ``--seed``:

* a recurring **benign pattern**, a nightly backup: every night at the VM's own time (between
  00:00 and 04:00 UTC, jittered by +-10 min from night to night), for 30 to 60 minutes, disk
  writes and network transmit jump by the night's volume on top of the trace: the VM's own
  level (20 to 60 MB/s) times a log-normal factor (sigma 0.4: incremental backups copy what
  changed that day);
* **true anomalies** at random times, one per 36 h on average per VM, after the first 1.5 days
  and never within an hour of a backup: a CPU spike (cpu_pct 85 to 100 % for 15 to 45 min) or a
  network plateau (receive or transmit up by 30 to 100 MB/s for 1 to 3 h).

Three runs over the same injected stream:

* ``without_feedback``: nobody answers;
* ``with_feedback``: a simulated operator answers, one hour after an incident opens,
  ``false_positive`` to the first ``--answers`` false-positive incidents (see below) of each
  VM and ``confirmed`` to every incident that opened on an injected anomaly. Verdicts go
  through ``agents.pipeline.apply_feedback`` and the fleet-wide per-class counts
  (``ClassSensitivity.record``), as ``MetricsProcessor.process_feedback`` does;
* ``false_positive_verdicts_only`` (reported beside, for reference): the same operator without
  the confirmations, to show what the false-positive verdicts alone cost in recall.

Every incident that opens is one of:

* a **true detection**: it opened inside an injected anomaly (from its start to 10 min after
  its end);
* a **false positive**: it opened during a backup (from its start to 30 min after its end),
  so it is known to be benign;
* **unlabelled**: anything else. The traces are real and unlabelled: these incidents may be
  real trouble or not, so the operator does not answer them and they are reported apart
  (``unlabelled_per_vm_day``), not counted as false positives.

Rates are measured after the feedback period (the first ``--feedback-days`` days of the
trace), on the same days in both runs:

* ``fp_per_vm_day``: false-positive incidents per VM-day;
* ``recall``: share of the injected anomalies with a true detection.

Writes ``{"without_feedback": {...}, "with_feedback": {...}, "fp_reduction": f,
"recall_ratio": q, "false_positive_verdicts_only": {...}, "setup": {...}}`` to ``--out``,
where ``fp_reduction = 1 - fp_with / fp_without`` and ``recall_ratio = recall_with /
recall_without`` (targets: >= 0.5 and >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents.anomaly.feedback import ClassSensitivity  # noqa: E402
from agents.pipeline import (  # noqa: E402
    PipelineConfig,
    VMState,
    apply_feedback,
    new_state,
    process_event,
)
from agents.state_layout import state_codec  # noqa: E402
from schemas.records import Feedback, MetricEvent  # noqa: E402
from streams.traces import bitbrains_files, read_fleet  # noqa: E402

#: how states are stored (for their size)
CODEC = state_codec(b"bench")

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/bitbrains_rnd"
DEFAULT_OUT = ROOT / "bench" / "results" / "feedback.json"
DAY_S = 86400.0
MB = 1e6
DETECTION_GRACE_S = 600.0
BACKUP_SLACK_S = 1800.0
ANSWER_DELAY_S = 3600.0
#: Night-to-night spread of a backup's volume (log-normal sigma): incremental backups copy
#: what changed that day, so their size varies.
VOLUME_SIGMA = 0.4


# ------------------------------------------------------------------------------ injections


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    kind: str  # "backup", "cpu_spike", "net_rx_plateau", "net_tx_plateau"
    level: float  # bytes/s added (backup, plateau) or cpu_pct (spike)

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass
class VMPlan:
    vm_id: str
    backups: list[Window] = field(default_factory=list)
    anomalies: list[Window] = field(default_factory=list)

    def apply(self, msg: dict[str, Any]) -> dict[str, Any]:
        t = msg["timestamp"]
        for w in self.backups:
            if w.covers(t):
                msg = {**msg,
                       "disk_write_bytes_per_s": msg["disk_write_bytes_per_s"] + w.level,
                       "net_tx_bytes_per_s": msg["net_tx_bytes_per_s"] + w.level}
        for w in self.anomalies:
            if not w.covers(t):
                continue
            if w.kind == "cpu_spike":
                msg = {**msg, "cpu_pct": max(msg["cpu_pct"], w.level)}
            else:
                metric = "net_rx_bytes_per_s" if w.kind == "net_rx_plateau" else \
                    "net_tx_bytes_per_s"
                msg = {**msg, metric: msg[metric] + w.level}
        return msg


def plan_vm(vm_id: str, first: float, last: float, rng: random.Random) -> VMPlan:
    """The VM's nightly backups and random true anomalies over [first, last]."""
    plan = VMPlan(vm_id)
    at = rng.uniform(0.0, 4 * 3600.0)  # the VM's backup time of day
    level = rng.uniform(20 * MB, 60 * MB)
    day = (first // DAY_S) * DAY_S
    while day < last:
        start = day + at + rng.uniform(-600.0, 600.0)
        plan.backups.append(Window(start, start + rng.uniform(1800.0, 3600.0), "backup",
                                   level * rng.lognormvariate(0.0, VOLUME_SIGMA)))
        day += DAY_S
    t = first + 1.5 * DAY_S
    while True:
        t += rng.expovariate(1.0 / (1.5 * DAY_S))
        if t >= last - 6 * 3600.0:
            break
        kind = rng.choice(("cpu_spike", "net_rx_plateau", "net_tx_plateau"))
        if kind == "cpu_spike":
            w = Window(t, t + rng.uniform(900.0, 2700.0), kind, rng.uniform(85.0, 100.0))
        else:
            w = Window(t, t + rng.uniform(3600.0, 3 * 3600.0), kind,
                       rng.uniform(30 * MB, 100 * MB))
        if any(w.start < b.end + 3600.0 and b.start - 3600.0 < w.end for b in plan.backups):
            continue  # keep the labels clean: no true anomaly next to a backup
        if plan.anomalies and w.start < plan.anomalies[-1].end + 3600.0:
            continue
        plan.anomalies.append(w)
    return plan


# ----------------------------------------------------------------------------------- replay


@dataclass
class Opened:
    vm_id: str
    incident_id: str
    anomaly_class: str
    started_at: float
    truth: Window | None  # the injected anomaly it detected, if any
    benign: bool  # opened during a backup (and is no true detection)


def _truth_of(plan: VMPlan, t: float) -> Window | None:
    for w in plan.anomalies:
        if w.start <= t <= w.end + DETECTION_GRACE_S:
            return w
    return None


def _during_backup(plan: VMPlan, t: float) -> bool:
    return any(b.start <= t <= b.end + BACKUP_SLACK_S for b in plan.backups)


def replay(data: Path, vms: int, seed: int, answers: int | None, confirm: bool = True
           ) -> tuple[list[Opened], dict[str, VMPlan], dict[str, tuple[float, float]],
                      dict[str, Any]]:
    """Run the pipeline over the injected traces; ``answers`` None: no operator."""
    cfg = PipelineConfig()
    spans: dict[str, tuple[float, float]] = {}
    for msg in read_fleet(data, vms):
        first, _ = spans.get(msg["vm_id"], (msg["timestamp"], msg["timestamp"]))
        spans[msg["vm_id"]] = (first, msg["timestamp"])
    plans = {vm: plan_vm(vm, first, last, random.Random(f"{seed}/{vm}"))
             for vm, (first, last) in sorted(spans.items())}
    states: dict[str, VMState] = {}
    fleet = ClassSensitivity()
    opened: list[Opened] = []
    pending: dict[str, list[tuple[float, Feedback]]] = defaultdict(list)
    fp_answered: dict[str, int] = defaultdict(int)
    verdicts: dict[str, int] = defaultdict(int)
    for msg in read_fleet(data, vms):
        vm = msg["vm_id"]
        plan = plans[vm]
        ev = MetricEvent.from_dict(plan.apply(msg))
        state = states.get(vm)
        if state is None:
            state = states[vm] = new_state(cfg)
        queue = pending[vm]
        while queue and queue[0][0] <= ev.timestamp:
            _, fb = queue.pop(0)
            applied = apply_feedback(state, fb, cfg)
            if applied is not None and applied[1]:
                record = applied[0]
                fleet.record(record.anomaly_class, fb.verdict, record.ended_at)
                verdicts[fb.verdict] += 1
        out = process_event(state, ev, cfg, fleet)
        for alert in out.alerts:
            if alert.status != "open":
                continue
            truth = _truth_of(plan, alert.started_at)
            o = Opened(vm, alert.incident_id, alert.anomaly_class, alert.started_at, truth,
                       truth is None and _during_backup(plan, alert.started_at))
            opened.append(o)
            if answers is None:
                continue
            verdict = ""
            if truth is not None:
                verdict = "confirmed" if confirm else ""
            elif o.benign and fp_answered[vm] < answers:
                fp_answered[vm] += 1
                verdict = "false_positive"
            if verdict:
                due = alert.started_at + ANSWER_DELAY_S
                queue.append((due, Feedback(incident_id=alert.incident_id,
                                            verdict=verdict,  # type: ignore[arg-type]
                                            timestamp=due)))
    info = {"verdicts": dict(verdicts), "fleet": repr(fleet),
            "max_state_bytes": max(len(CODEC.dumps(s, subject=vm.encode()))
                                   for vm, s in states.items())}
    return opened, plans, spans, info


def measure(opened: list[Opened], plans: dict[str, VMPlan],
            spans: dict[str, tuple[float, float]], eval_from: dict[str, float]
            ) -> dict[str, Any]:
    vm_days = sum(max(0.0, last - eval_from[vm]) / DAY_S for vm, (_, last) in spans.items())
    after = [o for o in opened if o.started_at >= eval_from[o.vm_id]]
    fps = [o for o in after if o.benign]
    unlabelled = [o for o in after if o.truth is None and not o.benign]
    anomalies = [(vm, w) for vm, p in plans.items() for w in p.anomalies
                 if w.start >= eval_from[vm]]
    found = {(o.vm_id, o.truth) for o in after if o.truth is not None}
    detected = [(vm, w) for vm, w in anomalies if (vm, w) in found]
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for vm, w in anomalies:
        by_kind[w.kind][1] += 1
        by_kind[w.kind][0] += int((vm, w) in found)
    return {
        "fp_per_vm_day": round(len(fps) / vm_days, 4),
        "recall": round(len(detected) / max(1, len(anomalies)), 4),
        "fp_incidents": len(fps),
        "unlabelled_per_vm_day": round(len(unlabelled) / vm_days, 4),
        "fp_by_class": dict(sorted(Counter(o.anomaly_class for o in fps).items())),
        "anomalies": len(anomalies),
        "detected": len(detected),
        "recall_by_kind": {k: round(d / n, 4) for k, (d, n) in sorted(by_kind.items())},
        "vm_days": round(vm_days, 2),
    }


def _run(args: tuple[Path, int, int, int | None, float, bool]) -> dict[str, Any]:
    data, vms, seed, answers, feedback_days, confirm = args
    started = time.perf_counter()
    opened, plans, spans, info = replay(data, vms, seed, answers, confirm)
    eval_from = {vm: first + feedback_days * DAY_S for vm, (first, _) in spans.items()}
    result = measure(opened, plans, spans, eval_from)
    result.update(info)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--vms", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--answers", type=int, default=3,
                        help="false-positive verdicts the operator gives per VM")
    parser.add_argument("--feedback-days", type=float, default=7.0,
                        help="days at the start of the trace not measured")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    bitbrains_files(args.data, args.vms)  # fail early, with the path, if the data is missing
    runs = [(args.data, args.vms, args.seed, None, args.feedback_days, True),
            (args.data, args.vms, args.seed, args.answers, args.feedback_days, True),
            (args.data, args.vms, args.seed, args.answers, args.feedback_days, False)]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=min(args.jobs, len(runs))) as pool:
            without, with_, fp_only = pool.map(_run, runs)
    else:
        without, with_, fp_only = (_run(r) for r in runs)
    fp_reduction = 1.0 - with_["fp_per_vm_day"] / without["fp_per_vm_day"] \
        if without["fp_per_vm_day"] else 0.0
    recall_ratio = with_["recall"] / without["recall"] if without["recall"] else 0.0
    report = {
        "without_feedback": without,
        "with_feedback": with_,
        "fp_reduction": round(fp_reduction, 4),
        "recall_ratio": round(recall_ratio, 4),
        "false_positive_verdicts_only": fp_only,
        "setup": {"vms": args.vms, "seed": args.seed, "answers_per_vm": args.answers,
                  "feedback_days": args.feedback_days, "data": str(args.data)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, r in (("without feedback", without), ("with feedback", with_),
                    ("FP verdicts only", fp_only)):
        print(f"{name:>17}: {r['fp_per_vm_day']:.3f} FP incidents per VM-day "
              f"({r['fp_incidents']}), recall {r['recall']:.3f} "
              f"({r['detected']}/{r['anomalies']}); unlabelled incidents per VM-day "
              f"{r['unlabelled_per_vm_day']:.3f}")
    print(f"FP reduction {fp_reduction:.1%} (target >= 50%), recall ratio {recall_ratio:.3f} "
          f"(target >= 0.9); written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
