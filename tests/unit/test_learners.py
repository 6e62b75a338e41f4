"""Contract checks over every learner, in the spirit of River's estimator checks.

Pickling round-trip, same seed same result, missing or new features, bounded state: what makes
checkpointing learners into changelogged tables and keeping one set per VM safe.
"""

from __future__ import annotations

import copy
import pickle

from agents.anomaly.classify import classify
from agents.anomaly.vm import Verdict, VMDetector
from agents.pipeline import PipelineConfig, new_state, process_event
from schemas.records import METRIC_FIELDS, MetricEvent
from streams.state_codec import StateCodec

STATE_BUDGET_BYTES = 64 * 1024


def metrics_of(events: list[MetricEvent]) -> list[tuple[float, dict[str, float]]]:
    return [(e.timestamp, e.metrics()) for e in events]


def run(det: VMDetector, samples: list[tuple[float, dict[str, float]]]) -> list[float]:
    scores = []
    for t, x in samples:
        scores.append(det.score_one(t, x).score)
        det.learn_one(t, x)
    return scores


def test_detector_pickle_round_trip_continues_identically(vm1_events: list[MetricEvent]) -> None:
    samples = metrics_of(vm1_events)
    det = VMDetector(seed=3)
    run(det, samples[:300])
    clone = pickle.loads(pickle.dumps(det))

    def nodes(d: VMDetector) -> list[tuple[object, ...]]:
        return [(type(n).__name__, getattr(n, "feature", None), getattr(n, "threshold", None),
                 n.l_mass, n.r_mass) for tree in d.trees.trees for n in tree.iter_dfs()]

    assert nodes(clone) == nodes(det), "the half-space trees come back node for node"
    assert run(clone, samples[300:]) == run(det, samples[300:])


def test_detector_pickled_with_river_tree_objects_still_loads(vm1_events: list[MetricEvent]
                                                              ) -> None:
    """States written before the trees were packed as arrays keep working."""
    samples = metrics_of(vm1_events)
    det = VMDetector(seed=3)
    run(det, samples[:300])
    legacy = VMDetector.__new__(VMDetector)
    legacy.__setstate__(copy.deepcopy(dict(det.__dict__)))  # trees as River objects
    assert run(legacy, samples[300:]) == run(det, samples[300:])


def test_detector_same_seed_same_scores(vm1_events: list[MetricEvent]) -> None:
    samples = metrics_of(vm1_events[:400])
    assert run(VMDetector(seed=9), samples) == run(VMDetector(seed=9), samples)
    assert max(run(VMDetector(seed=9), samples)) > 0, "a real trace never scored above 0"


def test_detector_tolerates_missing_and_new_metrics(vm1_events: list[MetricEvent]) -> None:
    det = VMDetector()
    for i, (t, x) in enumerate(metrics_of(vm1_events[:400])):
        x = dict(x)
        if i % 3 == 0:
            x.pop("cpu_pct")
        if i % 5 == 0:
            x["brand_new_metric"] = 1.0
        v = det.score_one(t, x)
        assert 0.0 <= v.score < 1.0
        det.learn_one(t, x)
        assert det.explain(x)


def test_detector_is_quiet_during_warmup_and_flags_a_spike(vm1_events: list[MetricEvent]
                                                           ) -> None:
    det = VMDetector()
    samples = metrics_of(vm1_events[:400])
    scores = run(det, samples[:200])
    assert max(scores) == 0.0, "scores before the warm-up ends must be 0"
    run(det, samples[200:399])
    t, x = samples[399]
    v = det.score_one(t, {**x, "cpu_pct": 100.0})
    assert v.score >= 0.4 and (v.metric, v.direction) == ("cpu_pct", 1.0), v
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
    """All of a VM's learners together stay under 64 KB (pickled, and as stored: signed and
    compressed) and stop growing once the windows are full."""
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
    assert raw < STATE_BUDGET_BYTES, f"uncompressed state of {raw} bytes"
    assert sizes[-1] < 1.15 * sizes[2], f"state keeps growing: {sizes}"


def test_pipeline_state_round_trip_gives_identical_outputs(vm1_events: list[MetricEvent]
                                                           ) -> None:
    cfg = PipelineConfig()
    state = new_state(cfg)
    for ev in vm1_events[:300]:
        process_event(state, ev, cfg)
    codec = StateCodec(b"k")
    restored = codec.loads(codec.dumps(state))
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
    codec = StateCodec(b"k")
    assert len(codec.dumps(state)) < STATE_BUDGET_BYTES
    assert len(pickle.dumps(state)) < 2 * STATE_BUDGET_BYTES


def test_trees_copied_for_a_new_detector_are_the_ones_river_draws() -> None:
    from river import anomaly

    from agents.anomaly.hst_state import build_like

    x = {m: 0.3 + 0.05 * i for i, m in enumerate(METRIC_FIELDS)}
    native = anomaly.HalfSpaceTrees(n_trees=3, height=6, window_size=100, seed=42)
    native.learn_one(x)
    for _ in range(2):  # the first copy builds the template, the second reuses it
        copied = anomaly.HalfSpaceTrees(n_trees=3, height=6, window_size=100, seed=42)
        build_like(copied, x)
        copied.learn_one(x)
        assert [(type(n), getattr(n, "feature", None), getattr(n, "threshold", None),
                 n.l_mass, n.r_mass) for t in copied.trees for n in t.iter_dfs()] == \
            [(type(n), getattr(n, "feature", None), getattr(n, "threshold", None),
              n.l_mass, n.r_mass) for t in native.trees for n in t.iter_dfs()]
        assert copied.counter == native.counter


def test_trees_built_from_arrays_are_rivers_node_for_node() -> None:
    """hst_state builds the nodes without River's constructors: same classes, same attributes
    (in the same order), the same tree shape, and ``_tree_nodes`` in River's pre-order."""
    from river import anomaly

    from agents.anomaly import hst_state

    def described(hst: anomaly.HalfSpaceTrees) -> list[list[tuple[object, ...]]]:
        out = []
        for tree, nodes in zip(hst.trees, hst._tree_nodes, strict=True):
            assert nodes == list(tree.iter_dfs())
            index = {id(n): i for i, n in enumerate(nodes)}
            out.append([(type(n), [(k, [index[id(c)] for c in v] if k == "children" else v)
                                   for k, v in vars(n).items()]) for n in nodes])
        return out

    x = {m: 0.3 + 0.05 * i for i, m in enumerate(METRIC_FIELDS)}
    native = anomaly.HalfSpaceTrees(n_trees=3, height=6, window_size=100, seed=7)
    for i in range(250):  # learned past a window: both masses set
        native.learn_one({m: (i * (j + 3) % 17) / 17 for j, m in enumerate(x)})
    assert described(hst_state.unpack(hst_state.pack(native))) == described(native)
    fresh = anomaly.HalfSpaceTrees(n_trees=3, height=6, window_size=100, seed=42)
    hst_state.build_like(fresh, x)
    drawn = anomaly.HalfSpaceTrees(n_trees=3, height=6, window_size=100, seed=42)
    drawn.learn_one(x)
    for nodes in drawn._tree_nodes:
        for node in nodes:
            node.l_mass = node.r_mass = 0
    assert described(fresh) == described(drawn)


def test_detector_pickled_in_the_former_format_still_loads(vm1_events: list[MetricEvent]
                                                          ) -> None:
    """EWStats and Likelihood pickle as constructor calls now, and a SeriesDetector with them
    as tuples; states written before (EWStats and Likelihood through __getstate__ tuples,
    SeriesDetector as its __dict__ of objects) still load and continue identically."""
    import copyreg
    import io

    from agents.anomaly.series import SeriesDetector
    from agents.anomaly.stats import EWStats, Likelihood

    class FormerPickler(pickle.Pickler):
        def reducer_override(self, obj: object) -> object:
            # as object.__reduce_ex__ did, with the former __getstate__ (or none)
            if isinstance(obj, EWStats):
                return (copyreg.__newobj__, (EWStats,), (obj.alpha, obj.n, obj.mean, obj.var))
            if isinstance(obj, Likelihood):
                return (copyreg.__newobj__, (Likelihood,),
                        (obj.short, obj.long, obj.warmup, obj.min_std))
            if isinstance(obj, SeriesDetector):
                return (copyreg.__newobj__, (SeriesDetector,), dict(obj.__dict__))
            return NotImplemented

    samples = metrics_of(vm1_events)
    det = VMDetector(seed=3)
    run(det, samples[:300])
    buf = io.BytesIO()
    FormerPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(det)
    assert b"_ewstats" not in buf.getvalue() and b"_tuples" not in buf.getvalue()
    former, now = pickle.loads(buf.getvalue()), pickle.loads(pickle.dumps(det))
    assert b"_tuples" in pickle.dumps(det)
    for loaded in (former, now):
        for m, series in loaded.series.items():
            assert vars(series).keys() == vars(det.series[m]).keys()
            assert type(series.slow) is EWStats and type(series.likelihoods["shift"]) is Likelihood
            assert series.slow.as_tuple() == det.series[m].slow.as_tuple()
    expected = run(det, samples[300:])
    assert run(former, samples[300:]) == expected
    assert run(now, samples[300:]) == expected
