"""Contract checks over every learner, in the spirit of River's estimator checks.

Pickling round-trip, same seed same result, missing or new features, bounded state: what makes
checkpointing learners into changelogged tables and keeping one set per VM safe.
"""

from __future__ import annotations

import copy
import pickle

import pytest

from agents.anomaly.classify import classify
from agents.anomaly.vm import Verdict, VMDetector
from agents.pipeline import PipelineConfig, new_state, process_event
from agents.state_layout import state_codec
from schemas.records import METRIC_FIELDS, MetricEvent

STATE_BUDGET_BYTES = 64 * 1024


def metrics_of(events: list[MetricEvent]) -> list[tuple[float, dict[str, float]]]:
    return [(e.timestamp, e.metrics()) for e in events]


def run(det: VMDetector, samples: list[tuple[float, dict[str, float]]]) -> list[float]:
    scores = []
    for t, x in samples:
        verdict = det.score_one(t, x)
        det.learn_one(t, x, verdict)
        scores.append(verdict.score)
    return scores


def test_detector_pickle_round_trip_continues_identically(vm1_events: list[MetricEvent]) -> None:
    samples = metrics_of(vm1_events)
    det = VMDetector(seed=3)
    run(det, samples[:300])
    clone = pickle.loads(pickle.dumps(det))
    assert run(clone, samples[300:]) == run(det, samples[300:])


def test_detector_same_seed_same_scores(vm1_events: list[MetricEvent]) -> None:
    samples = metrics_of(vm1_events[:400])
    assert run(VMDetector(seed=9), samples) == run(VMDetector(seed=9), samples)
    assert max(run(VMDetector(seed=9), samples)) > 0, "a real trace never scored above 0"


def test_detector_ignores_new_metrics_and_names_a_missing_one(vm1_events: list[MetricEvent]
                                                               ) -> None:
    det = VMDetector()
    for t, x in metrics_of(vm1_events[:400]):
        x = {**x, "brand_new_metric": 1.0}
        v = det.score_one(t, x)
        assert 0.0 <= v.score < 1.0
        det.learn_one(t, x, v)
        assert det.explain(x)
    t, x = metrics_of(vm1_events[400:401])[0]
    with pytest.raises(KeyError, match="cpu_pct"):
        det.score_one(t, {k: v for k, v in x.items() if k != "cpu_pct"})


def test_detector_is_quiet_during_warmup_and_flags_a_spike(vm1_events: list[MetricEvent]
                                                           ) -> None:
    det = VMDetector()
    samples = metrics_of(vm1_events[:400])
    scores = run(det, samples[:300])
    assert max(scores) == 0.0, "scores before the warm-up ends must be 0"
    run(det, samples[300:399])
    t, x = samples[399]
    v = det.score_one(t, {**x, "cpu_pct": 100.0})
    assert v.score >= 0.5 and (v.metric, v.direction) == ("cpu_pct", 1.0), v
    assert det.explain({**x, "cpu_pct": 100.0})[0].name == "cpu_pct"


def test_classify_names_the_explaining_metric() -> None:
    assert classify(Verdict(0.6, "cpu_pct", "extreme", 1.0), {}) == "cpu_spike"
    assert classify(Verdict(0.6, "net_tx_bytes_per_s", "level", 1.0), {}) == \
        "network_saturation"
    assert classify(Verdict(0.6, "memory_used_bytes", "level", 1.0), {}) == "memory_leak"
    flat = {"window.sliding.count": 8.0} | {f"{m}.sliding.std": 0.0 for m in
                                            ("cpu_pct", "memory_used_bytes",
                                             "net_rx_bytes_per_s", "net_tx_bytes_per_s")}
    assert classify(Verdict(0.6, "cpu_pct", "extreme", 1.0), flat) == "flatline"
    assert classify(Verdict(0.6, "cpu_pct", "extreme", -1.0), {}) == "unknown"


def test_vm_state_stays_within_budget_and_bounded(vm1_events: list[MetricEvent]) -> None:
    """All of a VM's learners together stay under 64 KB as stored (encoded, signed and
    compressed) and stop growing once the windows are full."""
    cfg = PipelineConfig()
    state = new_state(cfg)
    codec = state_codec(b"k")
    sizes = []
    for i, ev in enumerate(vm1_events):
        process_event(state, ev, cfg)
        if i % 100 == 99:
            sizes.append(len(codec.dumps(state, subject=b"vm-001")))
    assert max(sizes) < STATE_BUDGET_BYTES, sizes
    assert sizes[-1] < 1.15 * sizes[2], f"state keeps growing: {sizes}"


def test_pipeline_state_round_trip_gives_identical_outputs(vm1_events: list[MetricEvent]
                                                           ) -> None:
    cfg = PipelineConfig()
    state = new_state(cfg)
    for ev in vm1_events[:300]:
        process_event(state, ev, cfg)
    codec = state_codec(b"k")
    restored = codec.loads(codec.dumps(state, subject=b"vm-001"), subject=b"vm-001")
    other = copy.deepcopy(state)
    for ev in vm1_events[300:]:
        a, b, c = (process_event(s, ev, cfg) for s in (state, restored, other))
        assert a == b == c


def test_vm_state_with_full_feedback_memories_stays_within_budget(
        vm1_events: list[MetricEvent]) -> None:
    """The feedback learners at their bounds (32 recent incidents with 8 evidence keys each,
    every (metric, slot) bar, a gain per metric) still fit the per-VM budget."""
    from agents.anomaly.feedback import IncidentRecord, z_for_score

    cfg = PipelineConfig()
    state = new_state(cfg)
    for ev in vm1_events:
        process_event(state, ev, cfg)
    metrics = [*METRIC_FIELDS, "*"]
    z_thr = z_for_score(cfg.alert_threshold)
    for i in range(100):
        evidence = {(m, k): 20.0 + i + j for j, (m, k) in enumerate(
            (m, k) for m in metrics for k in ("extreme", "shift", "level"))}
        t = vm1_events[-1].timestamp + 1800.0 * i
        state.recent.note(f"vm-001/io_bottleneck/{int(t)}", "io_bottleneck", t, evidence)
        rec = IncidentRecord(f"x/{i}", "io_bottleneck", t)
        rec.ended_at = t + 3 * 3600.0
        rec.peaks = {(metrics[i % len(metrics)], "level"): 30.0}
        state.sensitivity.false_positive(rec, z_thr, now=t)
        if i % 7 == 0:
            state.sensitivity.confirmed(rec, z_thr, now=t)
    assert len(state.recent) == state.recent.capacity
    assert len(state.sensitivity.cells) == state.sensitivity.max_cells
    codec = state_codec(b"k")
    assert len(codec.dumps(state, subject=b"vm-001")) < STATE_BUDGET_BYTES
