"""The scaling benchmark (bench/scaling.py): scoring by hand, the baseline policies' rules, the
floors, the report's shape, and a small real slice end to end."""

from __future__ import annotations

import doctest
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import bench.scaling as scaling
import bench.scaling_policies as policies
from bench.scaling import (
    LIMIT,
    OURS,
    STATIC,
    VPA,
    Tally,
    VMTrace,
    allocations,
    build_report,
    format_table,
    gap_closed,
    load_vm,
    main,
    ours_available,
    replay,
    score,
)
from bench.scaling_policies import (
    CPU_FLOOR_CORES,
    GIB,
    MEM_FLOOR_BYTES,
    Reactive,
    VPAStyle,
    limit_allocation,
)
from streams.traces import bitbrains_files

DAY = 86400.0
STEP = 300.0


def trace(cpu: list[float] | np.ndarray, mem: list[float] | np.ndarray, cores: float = 2.0,
          mem_cap: float = 8 * GIB, t0: float = 1.0e9) -> VMTrace:
    cpu, mem = np.asarray(cpu, float), np.asarray(mem, float)
    t = np.asarray(t0 + STEP * np.arange(len(cpu)), dtype=np.float64)
    return VMTrace(1, t, cpu, mem, np.full(len(t), cores), np.full(len(t), mem_cap))


class Echo:
    """Allocates what it saw last; (0, 0) before anything."""

    def __init__(self, capacity_cores: float, capacity_bytes: float, step_s: float) -> None:
        self.last = (0.0, 0.0)

    def learn_one(self, t: float, cpu_cores: float, mem_bytes: float) -> None:
        self.last = (cpu_cores, mem_bytes)

    def allocation(self) -> tuple[float, float]:
        return self.last


@pytest.mark.parametrize("module", [scaling, policies])
def test_doctests(module: types.ModuleType) -> None:
    assert doctest.testmod(module).failed == 0


def test_score_by_hand() -> None:
    t = np.array([0.0, 100.0, 200.0, 300.0, 400.0])
    used = np.array([5.0, 1.0, 2.0, 3.0, 1.0])
    allocated = np.array([1.0, 2.0, 2.0, 2.5, 2.5])
    tally = score(t, used, allocated, scored_from=100.0)  # sample 0 is warm-up
    # allocated 2 + 2 + 2.5 + 2.5 = 9, used 1 + 2 + 3 + 1 = 7: the short step counts against
    assert tally.slack == pytest.approx(2 / 9)
    assert tally.shortfall == pytest.approx(1 / 4)  # 3 > 2.5 only (5 > 1 is warm-up)
    # 1 -> 2 at the first scored step (against the warm-up step before it) and 2 -> 2.5
    assert tally.changes == 2
    assert tally.days == pytest.approx(300.0 / DAY)
    assert tally.changes_per_vm_day == pytest.approx(2 / (300.0 / DAY))


def test_fleet_slack_pools_sums_not_ratios() -> None:
    a = Tally(allocated=10.0, used=5.0, steps=2, short=0, changes=1, days=1.0)
    b = Tally(allocated=1.0, used=0.0, steps=2, short=1, changes=3, days=1.0)
    a.merge(b)
    assert a.slack == pytest.approx(6 / 11)
    assert a.shortfall == pytest.approx(1 / 4)
    assert a.changes_per_vm_day == pytest.approx(2.0)


def test_nothing_scored_before_the_warmup_ends() -> None:
    tally = score(np.arange(3.0), np.ones(3), np.ones(3), scored_from=10.0)
    assert tally.steps == 0 and np.isnan(tally.slack)


def test_a_decision_applies_from_the_next_sample_and_floors_hold() -> None:
    cpu, mem = [0.0, 0.5, 0.01, 0.3], [0.0, 2 * GIB, 1.0, 3 * GIB]
    cores, memory = replay(Echo(2.0, 8 * GIB, STEP), trace(cpu, mem))
    assert cores.tolist() == [CPU_FLOOR_CORES, CPU_FLOOR_CORES, 0.5, CPU_FLOOR_CORES]
    assert memory.tolist() == [MEM_FLOOR_BYTES, MEM_FLOOR_BYTES, 2 * GIB, MEM_FLOOR_BYTES]


def test_offline_policies_keep_the_floors() -> None:
    tr = trace(np.zeros(100), np.zeros(100), cores=0.01, mem_cap=1.0)
    for name in (STATIC, LIMIT):
        cores, memory = allocations(name, tr)
        assert (cores == CPU_FLOOR_CORES).all() and (memory == MEM_FLOOR_BYTES).all()


def test_static_is_the_provisioned_capacity_at_each_sample() -> None:
    tr = trace([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
    tr.cap_bytes = np.array([1.0, 2.0, 4.0]) * GIB
    cores, memory = allocations(STATIC, tr)
    assert cores.tolist() == [2.0] * 3 and memory.tolist() == tr.cap_bytes.tolist()


def test_limit_is_never_short_and_changes_at_most_once_a_block() -> None:
    rng = np.random.default_rng(7)
    n = 3 * 288 + 17
    cpu, mem = rng.gamma(0.5, 0.4, n), rng.gamma(2.0, 0.3 * GIB, n)
    cores, memory = limit_allocation(cpu, mem, 72)
    assert (cpu <= cores).all() and (mem <= memory).all()
    assert (np.flatnonzero(np.diff(cores)) % 72 == 71).all()  # only across block boundaries
    assert np.count_nonzero(np.diff(memory)) <= n // 72
    assert cores[:72].max() == pytest.approx(max(cpu[:72].max(), CPU_FLOOR_CORES))


def test_limit_on_a_real_slice_is_never_short(bitbrains_dir: Path) -> None:
    tr = load_vm(bitbrains_files(bitbrains_dir, 1)[1], 1, days=3)
    cores, memory = allocations(LIMIT, tr)
    for used, alloc in ((tr.cpu, cores), (tr.mem, memory)):
        assert score(tr.t, used, alloc, tr.t[0] + DAY).short == 0


def test_vpa_moves_only_on_more_than_ten_percent() -> None:
    vpa = VPAStyle(2.0, 8 * GIB, STEP)
    seen: list[tuple[float, float, float]] = []

    def feed(hours: float, cpu: float, mem: float) -> None:
        start = len(seen) * STEP
        for i in range(round(hours * 3600 / STEP)):
            vpa.learn_one(start + i * STEP, cpu, mem)
            seen.append((start + i * STEP, *vpa.allocation()))

    feed(2, 0.5, 1 * GIB)
    assert vpa.allocation() == pytest.approx((0.5 * 1.15, 1.15 * GIB))
    feed(3, 0.52, 1.05 * GIB)  # targets 4 % and 5 % higher: no change
    assert vpa.allocation() == pytest.approx((0.5 * 1.15, 1.15 * GIB))
    feed(3, 0.5, 1.5 * GIB)  # memory target 1.725 GiB, 50 % higher: moves there
    assert vpa.allocation()[1] == pytest.approx(1.5 * 1.15 * GIB)
    changes = [(t, c, m) for (t, c, m), (_, c0, m0) in zip(seen[1:], seen, strict=False)
               if (c, m) != (c0, m0)]
    assert len(changes) == 2  # the first hourly update, then the memory step up
    assert changes[1][0] - changes[0][0] >= 3600


def test_vpa_starts_at_the_capacity_and_percentile_decays_by_event_time() -> None:
    vpa = VPAStyle(1.5, 4 * GIB, STEP)
    assert vpa.allocation() == (1.5, 4 * GIB)
    p = policies.DecayingPercentile(half_life_s=DAY)
    for i in range(288):  # a day of 1.0, then a day of 0.1
        p.add(i * STEP, 1.0)
    for i in range(288, 2 * 288):
        p.add(i * STEP, 0.1)
    # weights 1/3 for the older day, 2/3 for the newer one: the median is 0.1, p90 still 1.0
    assert p.percentile(0.5) == 0.1 and p.percentile(0.9) == 1.0


def test_reactive_scales_up_at_once_and_down_after_an_hour_low() -> None:
    r = Reactive(1.0, 8 * GIB, STEP)
    r.learn_one(0.0, 0.9, 1 * GIB)  # 90 % of 1 core: up to 0.9 / 0.6 = 1.5
    assert r.allocation()[0] == pytest.approx(1.5)
    for i in range(1, 13):  # 0.2 of 1.5 cores, 13 %, for under an hour: no change yet
        r.learn_one(i * STEP, 0.2, 1 * GIB)
    assert r.allocation()[0] == pytest.approx(1.5)
    r.learn_one(13 * STEP, 0.2, 1 * GIB)  # an hour low and an hour since the last change
    assert r.allocation()[0] == pytest.approx(0.2 / 0.6)


def test_ours_plugs_in_through_the_bench_policy_module(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("agents.scaling")
    module = types.ModuleType("agents.scaling.bench_policy")
    module.make = Echo  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "agents.scaling", package)
    monkeypatch.setitem(sys.modules, "agents.scaling.bench_policy", module)
    assert ours_available()
    cores, _ = allocations(OURS, trace([0.5, 0.7, 0.9], [GIB] * 3))
    assert cores.tolist() == [CPU_FLOOR_CORES, 0.5, 0.7]


def test_ours_is_skipped_with_a_warning_when_missing(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "agents.scaling.bench_policy", None)
    assert not ours_available()
    assert "skipping the 'ours' policy" in capsys.readouterr().err


def _report(ours: str | None = OURS) -> dict[str, object]:
    def tallies(allocated: float) -> dict[str, Tally]:
        return {res: Tally(allocated, 50.0, 10, 1, 2, 4.0) for res in ("cpu", "memory")}

    totals = {STATIC: tallies(1000.0), VPA: tallies(250.0), LIMIT: tallies(100.0)}
    if ours:
        totals[ours] = tallies(150.0)
    return build_report(totals, ours, overcommitted_targets=3)


def test_report_shape_and_gap_closed() -> None:
    report = _report()
    assert set(report) == {"ours", "vpa", "limit", "policies", "overcommitted_targets"}
    assert report["overcommitted_targets"] == 3
    assert isinstance(report["policies"], dict)
    for key in ("ours", "vpa", "limit"):
        assert report[key] in report["policies"]
    for per_res in report["policies"].values():
        assert set(per_res) == {"cpu", "memory"}
        for v in per_res.values():
            assert set(v) == {"slack", "shortfall", "changes_per_vm_day"}
    assert report["policies"][VPA]["cpu"] == {"slack": 0.8, "shortfall": 0.1,
                                              "changes_per_vm_day": 0.5}
    # slacks: vpa 0.8, ours 2/3, limit 0.5 -> (0.8 - 2/3) / (0.8 - 0.5)
    assert gap_closed(report) == pytest.approx((0.8 - 100 / 150) / 0.3, abs=1e-5)
    assert "memory gap closed (vpa -> limit): 44.4 %" in format_table(report)


def test_report_without_ours() -> None:
    report = _report(ours=None)
    assert report["ours"] is None and gap_closed(report) is None
    assert "n/a" in format_table(report)


def test_small_real_slice_end_to_end(tmp_path: Path, bitbrains_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "scaling.json", tmp_path / "scaling.png"
    assert main(["--data", str(bitbrains_dir), "--vms", "2", "--days", "3", "--out", str(out),
                 "--plot", str(png), "--workers", "1"]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"ours", "vpa", "limit", "policies", "overcommitted_targets",
                           "placement"}
    assert report["ours"] == OURS and ours_available()
    assert report["overcommitted_targets"] == 0 and report["placement"]["changes"] >= 2
    assert {STATIC, VPA, "reactive", LIMIT} <= set(report["policies"])
    assert report["policies"][LIMIT]["cpu"]["shortfall"] == 0.0
    assert report["policies"][LIMIT]["memory"]["shortfall"] == 0.0
    assert report["policies"][LIMIT]["cpu"]["changes_per_vm_day"] <= 4.0
    assert report["policies"][STATIC]["cpu"]["slack"] > report["policies"][LIMIT]["cpu"]["slack"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr()
    assert "limit" in printed.out and "memory gap closed" in printed.out
    assert "placement replay" in printed.out


def test_placement_replay_migrates_a_grown_vm_and_never_overcommits() -> None:
    from bench.placement_replay import replay

    gib = float(2**30)
    provisioned = {1: (4.0, 8 * gib), 2: (4.0, 8 * gib), 3: (4.0, 8 * gib), 4: (4.0, 8 * gib)}
    # Two VMs per host, hosts at the full provisioned size: host-01 {1, 2}, host-02 {3, 4}.
    changes = [(0.0, 1, 1.0, 2 * gib), (0.0, 2, 1.0, 2 * gib),
               (0.0, 3, 0.25, 2 * gib), (0.0, 4, 0.25, 2 * gib)]
    changes += [(10.0, 1, 6.0, 4 * gib),  # host-01 holds 1 + 6 of 8 cores: fits, stays
                (20.0, 2, 7.5, 4 * gib),  # 6 + 7.5 > 8: to host-02, where 0.5 + 7.5 <= 8
                (30.0, 3, 9.0, 2 * gib)]  # fits nowhere: capped
    r = replay(changes, provisioned, capacity_share=1.0, vms_per_host=2)
    assert (r.changes, r.migrations, r.capped, r.overcommitted_targets) == (7, 1, 1, 0)
