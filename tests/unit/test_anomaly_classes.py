"""Anomaly classes: the injectors of bench/inject.py, the classify() rules, the stuck-agent
evidence they read and one real slice through the pipeline."""

from __future__ import annotations

import copy
import itertools
import math
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.anomaly.classify import CLASSES, classify
from agents.anomaly.vm import Verdict, VMDetector
from agents.pipeline import PipelineConfig, new_state, process_event
from bench.anomaly_classes import Incident, RunResult, load_vm, match, schedule, score
from bench.inject import (
    DURATIONS_S,
    INJECTED_CLASSES,
    PLATEAU_FLOOR,
    Label,
    draw_duration,
    inject,
    memory_leak,
    percentile,
    span,
)
from schemas.records import METRIC_FIELDS
from schemas.validate import Rejected, decode_metric
from streams.traces import bitbrains_files

STEP = 300.0


def rows_of(n: int = 400, *, cpu: float = 40.0, mem_frac: float = 0.3, seed: int = 0
            ) -> list[dict[str, Any]]:
    """A synthetic trace: noisy metrics around fixed levels, 5-min steps."""
    rng = random.Random(seed)
    total = 4e9
    return [{"vm_id": "vm-t", "host_id": "h-t", "timestamp": 1e9 + STEP * i,
             "cpu_pct": min(100.0, max(0.0, cpu + rng.gauss(0, 5))),
             "memory_used_bytes": min(total, max(0.0, total * mem_frac + rng.gauss(0, 5e7))),
             "memory_total_bytes": total, "vcpus": 4,
             "disk_read_bytes_per_s": abs(rng.gauss(2e5, 5e4)),
             "disk_write_bytes_per_s": abs(rng.gauss(4e5, 1e5)),
             "net_rx_bytes_per_s": abs(rng.gauss(1e6, 2e5)),
             "net_tx_bytes_per_s": abs(rng.gauss(5e5, 1e5))} for i in range(n)]


def valid(row: dict[str, Any]) -> bool:
    return not isinstance(decode_metric(orjson.dumps(row), now=row["timestamp"]), Rejected)


# --------------------------------------------------------------------------- injectors


@pytest.mark.parametrize("cls", INJECTED_CLASSES)
@pytest.mark.parametrize("seed", range(5))
def test_injector_respects_schema_labels_its_span_and_leaves_the_rest(cls: str, seed: int
                                                                      ) -> None:
    # A busy VM near its limits: high CPU, memory at 70 % of the total.
    rows = rows_of(cpu=85.0, mem_frac=0.7, seed=seed)
    before = copy.deepcopy(rows)
    rng = random.Random(seed)
    duration = draw_duration(cls, rng, STEP)
    lo, hi = DURATIONS_S[cls]
    assert math.ceil(lo / STEP) <= duration <= hi / STEP
    start = 150
    out, label = inject(cls, rows, start, min(duration, 150), rng)
    n = span(cls, min(duration, 150))
    assert rows == before, "the input trace must not change"
    assert len(out) == len(rows)
    assert label.anomaly_class == cls and label.vm_id == "vm-t"
    assert label.start_ts == rows[start]["timestamp"]
    assert label.end_ts == rows[start + n - 1]["timestamp"]
    for i, (a, b) in enumerate(zip(rows, out, strict=True)):
        if not start <= i < start + n:
            assert a is b, f"row {i} outside the episode was touched"
        assert valid(b), f"row {i} breaks the vm.metrics schema: {b}"
        assert b["timestamp"] == a["timestamp"]
        assert 0 <= b["cpu_pct"] <= 100 and b["memory_used_bytes"] <= b["memory_total_bytes"]
    assert any(out[i] != rows[i] for i in range(start, start + n)), "nothing was injected"


def test_cpu_spike_signature() -> None:
    rows = rows_of()
    out, _ = inject("cpu_spike", rows, 200, 6, random.Random(1))
    assert all(90.0 <= r["cpu_pct"] <= 100.0 for r in out[200:206])
    assert all(out[i] is rows[i] for i in (199, 206))
    assert {k for r, s in zip(out[200:206], rows[200:206], strict=True)
            for k in r if r[k] != s[k]} == {"cpu_pct"}


def test_memory_leak_grows_linearly_then_holds_and_is_capped() -> None:
    rows = rows_of(mem_frac=0.2)
    out, label = memory_leak(rows, 100, 80, random.Random(2), hold=20)
    leaked = [o["memory_used_bytes"] - r["memory_used_bytes"] for o, r in
              zip(out[100:200], rows[100:200], strict=True)]
    total = rows[100]["memory_total_bytes"]
    frac = label.params["fraction"]
    assert 0.30 <= frac <= 0.60
    assert leaked[:80] == pytest.approx([frac * total * (k + 1) / 80 for k in range(80)],
                                        rel=1e-9)
    assert leaked[80:] == pytest.approx([frac * total] * 20)
    assert out[200] is rows[200], "the restart frees the leak"
    assert label.end_ts == rows[199]["timestamp"]
    # Near the total, the leak shrinks to fit: level + leak <= 98 % of the total.
    full = rows_of(mem_frac=0.8)
    out, label = memory_leak(full, 100, 80, random.Random(2))
    assert label.params["fraction"] == pytest.approx(0.98 - full[100]["memory_used_bytes"]
                                                     / full[100]["memory_total_bytes"])
    assert all(r["memory_used_bytes"] <= r["memory_total_bytes"] for r in out)


@pytest.mark.parametrize("cls,metrics", [
    ("network_saturation", ("net_rx_bytes_per_s", "net_tx_bytes_per_s")),
    ("io_bottleneck", ("disk_write_bytes_per_s", "disk_read_bytes_per_s")),
])
def test_plateau_sits_at_20_to_50_times_the_p99_before_the_start(cls: str,
                                                                  metrics: tuple[str, str]
                                                                  ) -> None:
    rows = rows_of()
    chosen: set[str] = set()
    for seed in range(12):
        out, label = inject(cls, rows, 200, 24, random.Random(seed))
        assert set(label.params["levels"]) <= set(metrics)
        chosen |= set(label.params["levels"])
        for m, level in label.params["levels"].items():
            ref = max(percentile([r[m] for r in rows[:200]], 0.99), PLATEAU_FLOOR)
            assert 20 * ref <= level <= 50 * ref
            values = [r[m] for r in out[200:224]]
            assert all(0.979 * level <= v <= 1.021 * level for v in values)
        untouched = set(metrics) - set(label.params["levels"])
        assert all(out[i][m] == rows[i][m] for i in range(200, 224) for m in untouched)
    assert chosen == set(metrics), "either metric, or both, can saturate"


def test_plateau_has_a_floor_on_an_idle_device() -> None:
    rows = [dict(r, net_rx_bytes_per_s=0.0, net_tx_bytes_per_s=0.0) for r in rows_of()]
    _, label = inject("network_saturation", rows, 200, 12, random.Random(0))
    assert all(v >= 20 * PLATEAU_FLOOR for v in label.params["levels"].values())


def test_flatline_freezes_every_field_at_the_sample_before() -> None:
    rows = rows_of()
    out, _ = inject("flatline", rows, 250, 36, random.Random(0))
    frozen = {k: v for k, v in rows[249].items() if k not in ("timestamp",)}
    for r, orig in zip(out[250:286], rows[250:286], strict=True):
        assert {k: v for k, v in r.items() if k != "timestamp"} == frozen
        assert r["timestamp"] == orig["timestamp"]
    assert out[286] is rows[286]


def test_injector_refuses_an_episode_that_does_not_fit() -> None:
    rows = rows_of(50)
    with pytest.raises(ValueError):
        inject("flatline", rows, 0, 5, random.Random(0))  # nothing before to freeze
    with pytest.raises(ValueError):
        inject("cpu_spike", rows, 48, 5, random.Random(0))


def test_schedule_spaces_episodes_and_covers_every_class() -> None:
    rows = rows_of(4000)  # ~14 days
    out, labels = schedule(rows, random.Random(3))
    assert {lb.anomaly_class for lb in labels[:5]} == set(INJECTED_CLASSES)
    assert labels[0].start_ts >= rows[0]["timestamp"] + 2 * 86400
    for a, b in itertools.pairwise(labels):
        assert b.start_ts - a.end_ts >= 86400
    assert all(valid(r) for r in out)


def test_scoring_first_incident_recall_and_precision() -> None:
    labels = [Label("cpu_spike", 1000.0, 2000.0, "vm-a"), Label("flatline", 10000.0, 12000.0,
                                                                  "vm-a"),
              Label("io_bottleneck", 50000.0, 51000.0, "vm-a")]
    incidents = [Incident("vm-a", 1500.0, "cpu_spike", 0.5),
                 Incident("vm-a", 11000.0, "network_saturation", 0.5),
                 Incident("vm-a", 12000.0 + 3000.0, "flatline", 0.5),  # within the grace
                 Incident("vm-a", 30000.0, "cpu_spike", 0.5),  # unlabelled
                 Incident("vm-b", 1500.0, "cpu_spike", 0.5)]  # another VM: unlabelled
    matched, rest = match(labels, incidents)
    assert [len(m) for m in matched] == [1, 2, 0] and len(rest) == 2
    summary, details = score([RunResult(1, 0, labels, incidents, samples=100, seconds=0.0)])
    assert summary["accuracy"] == 0.5  # flatline's first incident named network_saturation
    assert summary["classes"]["cpu_spike"] == {"precision": 1.0, "recall": 1.0}
    assert summary["classes"]["flatline"] == {"precision": 1.0, "recall": 1.0}
    assert summary["classes"]["network_saturation"] == {"precision": 0.0, "recall": None}
    assert summary["classes"]["io_bottleneck"] == {"precision": None, "recall": 0.0}
    assert details["unlabelled_incidents"]["cpu_spike"] == 2
    assert set(summary["classes"]) == set(CLASSES)


# --------------------------------------------------------------------------- classify


def test_classify_rules_on_synthetic_verdicts() -> None:
    assert classify(Verdict(0.6, "cpu_pct", "extreme", 1.0), {}) == "cpu_spike"
    assert classify(Verdict(0.6, "cpu_pct", "shift", -1.0), {}) == "unknown"
    assert classify(Verdict(0.5, "memory_used_bytes", "trend", 1.0), {}) == "memory_leak"
    assert classify(Verdict(0.5, "memory_used_bytes", "level", -1.0), {}) == "unknown"
    assert classify(Verdict(0.5, "disk_write_bytes_per_s", "level", 1.0), {}) == \
        "io_bottleneck"
    assert classify(Verdict(0.5, "disk_read_bytes_per_s", "shift", -1.0), {}) == \
        "io_bottleneck"
    assert classify(Verdict(0.5, "net_rx_bytes_per_s", "extreme", 1.0), {}) == \
        "network_saturation"
    assert classify(Verdict(0.5, "net_tx_bytes_per_s", "level", -1.0), {}) == "unknown"
    # A stuck agent: whatever metric is named, the stuck evidence decides.
    assert classify(Verdict(0.5, "cpu_pct", "stuck", 1.0), {}) == "flatline"
    flat = {"window.sliding.count": 10.0} | {f"{m}.sliding.std": 0.0 for m in METRIC_FIELDS}
    assert classify(Verdict(0.5, "net_rx_bytes_per_s", "extreme", 1.0), flat) == "flatline"
    few = {"window.sliding.count": 3.0} | {f"{m}.sliding.std": 0.0 for m in METRIC_FIELDS}
    assert classify(Verdict(0.5, "cpu_pct", "extreme", 1.0), few) == "cpu_spike"


def noisy(rng: random.Random) -> dict[str, float]:
    return {"cpu_pct": 20 + rng.gauss(0, 2), "memory_used_bytes": 2e9 + rng.gauss(0, 2e7),
            "net_rx_bytes_per_s": 1e5 + rng.gauss(0, 1e3)}


def test_a_frozen_sample_is_stuck_evidence_only_with_several_metrics() -> None:
    rng = random.Random(5)
    det = VMDetector(metrics=("cpu_pct", "memory_used_bytes", "net_rx_bytes_per_s"))
    t = 0.0
    for _ in range(600):
        x = noisy(rng)
        det.learn_one(t, x, det.score_one(t, x))
        t += STEP
    verdicts = []
    for _ in range(6):  # the agent re-sends x
        verdicts.append(det.score_one(t, x))
        det.learn_one(t, x, verdicts[-1])
        t += STEP
    # each repeat of a VM that never repeats is 3 decades: one is nothing, six are an alert
    assert verdicts[0].evidence[("*", "stuck")] == pytest.approx(3.0)
    assert verdicts[-1].score >= PipelineConfig().alert_threshold
    assert verdicts[-1].kind == "stuck"
    assert classify(verdicts[-1], {}) == "flatline"
    single = VMDetector(metrics=("value",))  # one metric repeating is no stuck agent
    for i in range(600):
        y = {"value": rng.gauss(0, 1)} if i < 590 else {"value": 1.0}
        verdict = single.score_one(STEP * i, y)
        single.learn_one(STEP * i, y, verdict)
    assert verdict.evidence[("*", "stuck")] == 0.0


# --------------------------------------------------------------------------- real slice


def test_injections_into_a_real_vm_are_detected_and_named(bitbrains_dir: Path) -> None:
    """VM 1, ~7.6 days (2 of warm-up), one injection of each class a day apart."""
    rows = load_vm(bitbrains_files(bitbrains_dir, 1)[1], 1, 7.6)
    rng = random.Random(0)
    labels = []
    for cls, start, duration in (("cpu_spike", 700, 6), ("flatline", 1000, 24),
                                 ("memory_leak", 1300, 96), ("io_bottleneck", 1720, 24),
                                 ("network_saturation", 2010, 24)):
        rows, label = inject(cls, rows, start, duration, rng)
        labels.append(label)
    cfg = PipelineConfig()
    state = new_state(cfg)
    incidents = []
    for row in rows:
        ev = decode_metric(orjson.dumps(row), now=row["timestamp"])
        assert not isinstance(ev, Rejected), ev
        out = process_event(state, ev, cfg)
        incidents += [Incident(a.vm_id, a.started_at, a.anomaly_class, a.score)
                      for a in out.alerts if a.status == "open"]
    matched, _ = match(labels, incidents)
    named = {lb.anomaly_class: [i.anomaly_class for i in m]
             for lb, m in zip(labels, matched, strict=True)}
    assert named["cpu_spike"][:1] == ["cpu_spike"], named
    assert named["flatline"][:1] == ["flatline"], named
    stuck = next(i for i in incidents if i.anomaly_class == "flatline")
    assert stuck.started_at - labels[1].start_ts <= 6 * STEP, "a stuck agent within 30 min"
