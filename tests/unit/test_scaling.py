"""Right-sizing and workload patterns: pure, on synthetic series and real trace slices."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agents.scaling.patterns import PatternDetector
from agents.scaling.rightsizing import RightSizer, window_quantile
from streams.traces import bitbrains_files, read_vm


def test_window_quantile_nearest_rank() -> None:
    assert window_quantile([], 0.8) == 0.0
    assert window_quantile([3.0, 1.0, 2.0], 1.0) == 3.0
    assert window_quantile([float(i) for i in range(1, 11)], 0.8) == 8.0


def test_scale_up_is_prompt_and_scale_down_waits_and_cools_down() -> None:
    rs = RightSizer(10.0, quantile=1.0, margin=0.1, stabilization_s=3600.0, cooldown_s=7200.0,
                    down_band=0.2)
    changes = []
    for i in range(60):  # 5 hours at 5 minutes, use 2.0
        c = rs.update(300.0 * i, forecast=2.0, recent=[2.0])
        if c:
            changes.append((i, c.direction))
    assert changes == [(12, "down")]  # after 1 h low, not before
    assert rs.allocation == pytest.approx(2.2)
    up = rs.update(300.0 * 60, forecast=5.0, recent=[2.0])
    assert up is not None and up.direction == "up" and up.new == pytest.approx(5.5)
    # Low again at once, but the cooldown holds the next scale-down for 2 h after the change.
    downs = [i for i in range(61, 120)
             if (c := rs.update(300.0 * i, forecast=2.0, recent=[2.0])) and c.direction == "down"]
    assert downs and 300.0 * downs[0] - 300.0 * 60 >= 7200.0


def test_no_flapping_on_a_noisy_real_trace(bitbrains_dir: Path) -> None:
    """A week of VM 1's memory (the noisiest): every scale-down waits out the cooldown after
    the previous change, the allocation never drops below the floor, and changes stay few."""
    files = bitbrains_files(bitbrains_dir)
    rs = RightSizer(8 * 2**30, quantile=1.0, margin=0.15, stabilization_s=7200.0,
                    cooldown_s=10800.0, down_band=0.2, floor=64 * 2**20)
    recent: list[float] = []
    changes: list[tuple[float, str]] = []
    for s in read_vm(files[1], 1, limit=288 * 7):
        recent = [*recent, s["memory_used_bytes"]][-72:]
        c = rs.update(s["timestamp"], forecast=0.0, recent=recent)
        if c:
            if c.direction == "down" and changes:
                assert s["timestamp"] - changes[-1][0] >= 10800.0
            changes.append((s["timestamp"], c.direction))
        assert rs.allocation >= 64 * 2**20
        assert rs.allocation >= s["memory_used_bytes"]  # the peak is covered at once
    assert 1 <= len(changes) <= 6 * 7, changes


def _feed(d: PatternDetector, days: int, cpu: object, mem: object = lambda i: 2e9) -> None:
    for i in range(288 * days):
        d.learn_one(300.0 * i, cpu(i), mem(i))  # type: ignore[operator]


@pytest.mark.parametrize(("cpu", "mem", "expected"), [
    (lambda i: 0.5, lambda i: 2e9, "idle"),
    (lambda i: 40 + 30 * math.sin(2 * math.pi * i / 288), lambda i: 2e9, "periodic_daily"),
    (lambda i: 30.0 + (i % 3), lambda i: 2e9, "steady"),
    (lambda i: 30.0, lambda i: 1e9 + 2e6 * i, "growing"),
    (lambda i: 90.0 if i % 12 == 0 else 10.0, lambda i: 2e9, "bursty"),
])
def test_patterns_on_synthetic_series(cpu: object, mem: object, expected: str) -> None:
    d = PatternDetector()
    _feed(d, 5, cpu, mem)
    assert d.pattern == expected, (d.pattern, d.acf_daily, d.burstiness, d.growth_per_day)


def test_weekly_pattern_needs_two_weeks() -> None:
    d = PatternDetector()

    def cpu(i: int) -> float:
        return 60.0 if (i // 288) % 7 < 2 else 20.0  # two busy days a week
    _feed(d, 6, cpu)
    assert d.pattern != "periodic_weekly"
    _feed(d, 15, cpu)
    assert d.pattern == "periodic_weekly", (d.acf_weekly, d.acf_daily)


def test_pattern_on_a_real_trace_and_state_round_trip(bitbrains_dir: Path) -> None:
    import pickle

    files = bitbrains_files(bitbrains_dir)
    d = PatternDetector()
    for s in read_vm(files[12], 12, limit=288 * 4):
        d.learn_one(s["timestamp"], s["cpu_pct"], s["memory_used_bytes"])
    assert d.pattern != "unknown"
    assert d.describe().startswith("pattern ")
    clone = pickle.loads(pickle.dumps(d))
    assert clone.pattern == d.pattern and list(clone.cpu_hourly) == list(d.cpu_hourly)
    assert len(pickle.dumps(d)) < 4096


def test_pickled_states_keep_their_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sizers and the detector pickle their slots' values in order, the config its
    fields' values (as dataclasses did: a config pickled that way still loads)."""
    import dataclasses
    import pickle

    from agents.scaling.sizing import SizingConfig

    rs = RightSizer(4.0, quantile=0.8, floor=0.025)
    rs.update(0.0, forecast=9.0, recent=[1.0])
    assert rs.__getstate__() == tuple(getattr(rs, s) for s in RightSizer.__slots__)
    d = PatternDetector()
    d.learn_one(0.0, 10.0, 1e9)
    assert d.__getstate__() == tuple(getattr(d, s) for s in PatternDetector.__slots__)
    cfg = SizingConfig(cpu_quantile=0.7, down_band=0.3)
    with monkeypatch.context() as m:  # the dataclasses format
        m.setattr(SizingConfig, "__getstate__", lambda self: [
            getattr(self, f.name) for f in dataclasses.fields(self)])
        old = pickle.dumps(cfg)
    assert pickle.loads(old) == cfg == pickle.loads(pickle.dumps(cfg))
    clone = pickle.loads(pickle.dumps(rs))
    assert [getattr(clone, s) for s in RightSizer.__slots__] == list(rs.__getstate__())


def test_actions_are_judged_against_what_the_vm_has(bitbrains_dir: Path) -> None:
    """The trace's VMs keep their provisioning (no recommendation is applied in a replay):
    a target with more of something than the VM reports is a scale_up, one with less of
    something and more of nothing a scale_down."""
    from agents.forecasting.vm import VMForecaster
    from agents.scaling.recommender import VMRecommender
    from agents.scaling.sizing import SizingConfig
    from schemas.records import MetricEvent

    recs = []
    for vm, files in list(bitbrains_files(bitbrains_dir).items())[:4]:
        fc, rec = VMForecaster(), VMRecommender(SizingConfig())
        for msg in read_vm(files, vm, limit=1500):
            ev = MetricEvent.from_dict(msg)
            fc.learn_one(ev)
            if (r := rec.recommend(ev, fc, hosts=None)) is not None:
                recs.append(r)
    assert {r.action for r in recs} == {"scale_up", "scale_down"}
    for r in recs:
        more = r.target_vcpus > r.current_vcpus or \
            r.target_memory_bytes > r.current_memory_bytes
        less = r.target_vcpus < r.current_vcpus or \
            r.target_memory_bytes < r.current_memory_bytes
        if more:
            assert r.action == "scale_up", r
        elif less:
            assert r.action == "scale_down", r
