"""Contract checks over every learner, in the spirit of River's estimator checks.

Pickling round-trip, same seed same result, missing or new features, bounded state: what makes
checkpointing learners into changelogged tables and keeping one set per VM safe.
"""

from __future__ import annotations

import copy
import pickle

import pytest

from agents.detectors import VMAnomalyDetector, classify
from agents.forecasters import MetricForecaster
from agents.pipeline import PipelineConfig, new_state, process_event
from schemas.records import FeatureContribution, MetricEvent
from streams.features import FeatureExtractor
from streams.state_codec import StateCodec

STATE_BUDGET_BYTES = 64 * 1024


def features_of(events: list[MetricEvent]) -> list[dict[str, float]]:
    fx = FeatureExtractor()
    return [fx.update(e.timestamp, e.metrics()) for e in events]


def test_detector_pickle_round_trip_continues_identically(vm1_events: list[MetricEvent]) -> None:
    xs = features_of(vm1_events[:300])
    det = VMAnomalyDetector(warmup_events=20, seed=3)
    for x in xs[:200]:
        det.learn_one(x)
    clone = pickle.loads(pickle.dumps(det))
    for x in xs[200:]:
        assert clone.score_one(x) == det.score_one(x)
        det.learn_one(x)
        clone.learn_one(x)
    assert clone.current_threshold == det.current_threshold


def test_detector_same_seed_same_scores(vm1_events: list[MetricEvent]) -> None:
    xs = features_of(vm1_events[:150])
    a, b = VMAnomalyDetector(seed=9), VMAnomalyDetector(seed=9)
    scores_a, scores_b = [], []
    for x in xs:
        scores_a.append(a.score_one(x))
        scores_b.append(b.score_one(x))
        a.learn_one(x)
        b.learn_one(x)
    assert scores_a == scores_b


def test_detector_tolerates_missing_and_new_features(vm1_events: list[MetricEvent]) -> None:
    det = VMAnomalyDetector(warmup_events=5)
    for i, x in enumerate(features_of(vm1_events[:60])):
        x = dict(x)
        if i % 3 == 0:
            x.pop("cpu_pct.sliding.mean")
        if i % 5 == 0:
            x["brand.new.feature"] = 1.0
        score = det.score_one(x)
        assert 0.0 <= score <= 1.0
        det.learn_one(x)
        assert det.explain(x)


def test_detector_is_not_anomalous_during_warmup() -> None:
    det = VMAnomalyDetector(warmup_events=10)
    for _ in range(9):
        det.learn_one({"cpu_pct.sliding.last": 1.0})
    assert not det.is_anomalous(1.0)


def test_classify_names_the_explaining_metric() -> None:
    def c(name: str) -> list[FeatureContribution]:
        return [FeatureContribution(name, 1.0, 0.0, 9.0)]

    assert classify(c("cpu_pct.sliding.last"), {}) == "cpu_spike"
    assert classify(c("net_tx_bytes_per_s.sliding.mean"), {}) == "network_saturation"
    assert classify(c("memory_used_bytes.sliding.last"),
                    {"memory_used_bytes.sliding.slope_per_s": 10.0}) == "memory_leak"
    flat = {"window.sliding.count": 5.0, "cpu_pct.sliding.std": 0.0,
            "memory_used_bytes.sliding.std": 0.0, "net_rx_bytes_per_s.sliding.std": 0.0}
    assert classify(c("cpu_pct.sliding.last"), flat) == "flatline"
    assert classify([], {}) == "unknown"


def test_forecaster_round_trip_and_intervals(vm1_events: list[MetricEvent]) -> None:
    fc = MetricForecaster()
    assert fc.forecast(3) == [0.0, 0.0, 0.0]  # nothing learned: no IndexError from River
    fc.learn_one(5.0)
    assert fc.forecast(2) == [5.0, 5.0]
    for e in vm1_events[:300]:
        fc.learn_one(e.net_rx_bytes_per_s)
    clone = pickle.loads(pickle.dumps(fc))
    assert clone.forecast(12) == fc.forecast(12)
    bands = fc.interval(12)
    widths = [hi - lo for lo, hi, _, _ in bands]
    assert widths == sorted(widths), "intervals widen with the horizon"
    assert all(lo90 <= lo80 and hi80 <= hi90 for lo80, hi80, lo90, hi90 in bands)
    assert all(v >= 0 for v in fc.forecast(12))


def test_forecaster_tracks_a_trend() -> None:
    fc = MetricForecaster()
    for t in range(100):
        fc.learn_one(10.0 + t)
    assert fc.forecast(5)[-1] == pytest.approx(114.0, abs=1.0)


def test_vm_state_stays_within_budget_and_bounded(vm1_events: list[MetricEvent]) -> None:
    """All of a VM's learners together, signed and compressed, stay under 64 KB and stop
    growing once the windows are full."""
    cfg = PipelineConfig()
    state = new_state(cfg)
    codec = StateCodec(b"k")
    sizes = []
    for i, ev in enumerate(vm1_events):
        process_event(state, ev, cfg)
        if i % 100 == 99:
            sizes.append(len(codec.dumps(state)))
    assert max(sizes) < STATE_BUDGET_BYTES, sizes
    raw = len(pickle.dumps(state))
    assert raw < 2 * STATE_BUDGET_BYTES, raw
    assert sizes[-1] < 1.15 * sizes[2], f"state keeps growing: {sizes}"


def test_pipeline_state_round_trip_gives_identical_outputs(vm1_events: list[MetricEvent]
                                                           ) -> None:
    cfg = PipelineConfig(warmup_events=20)
    state = new_state(cfg)
    for ev in vm1_events[:250]:
        process_event(state, ev, cfg)
    codec = StateCodec(b"k")
    restored = codec.loads(codec.dumps(state))
    other = copy.deepcopy(state)
    for ev in vm1_events[250:400]:
        a, b, c = (process_event(s, ev, cfg) for s in (state, restored, other))
        assert a == b == c
