"""The detector's members, each on its own: River as the reference where River implements the
method, the verbs' contract (scoring changes nothing; rows are independent), bounded state."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
from river import anomaly
from scipy.special import log_ndtr

from agents.anomaly.analog import AnalogPrediction
from agents.anomaly.hst import HalfSpaceTrees
from agents.anomaly.level import LevelShift
from agents.anomaly.likelihood import AnomalyLikelihood, decades, onset, squash
from agents.anomaly.range import RangeNovelty
from agents.anomaly.seasonal import SeasonalResidual
from agents.anomaly.series import MEMBERS, SeriesDetector
from agents.anomaly.stuck import StuckRun
from agents.anomaly.trend import TrendGrowth
from agents.anomaly.vm import FleetDetector, VMDetector
from schemas.records import METRIC_FIELDS

STEP = 300.0
#: What issue 16 allows one series (a VM's metric) to hold.
SERIES_BUDGET_BYTES = 4096


def arrays(obj: object) -> dict[str, np.ndarray]:
    """Every numpy array a learner holds, by dotted name (members' arrays included)."""
    out = {}
    for name, value in vars(obj).items():
        if isinstance(value, np.ndarray):
            out[name] = value
        elif type(value).__module__.startswith("agents.anomaly"):
            out.update({f"{name}.{k}": v for k, v in arrays(value).items()})
    return out


def test_half_space_trees_score_as_rivers_on_the_same_stream() -> None:
    rng = random.Random(4)
    names = ["b", "a", "c"]  # River sorts features by name; ours are columns in that order
    ours = HalfSpaceTrees(rows=1, features=3, n_trees=4, height=5, window_size=25, seed=11)
    river = anomaly.HalfSpaceTrees(n_trees=4, height=5, window_size=25, seed=11)
    for i in range(400):
        x = {n: min(1.0, max(0.0, rng.gauss(0.5, 0.15))) for n in names}
        if i % 97 == 0:
            x["c"] = 0.99
        row = [[x[n] for n in sorted(names)]]
        assert ours.score_many([0], row)[0] == pytest.approx(river.score_one(x), abs=1e-12)
        ours.learn_many([0], row)
        river.learn_one(x)


def test_decades_is_the_normal_tail_everywhere() -> None:
    for z in (-3.0, 0.0, 1.0, 4.2649, 12.0, 29.99, 30.01, 38.0, 60.0, 200.0):
        expected = -float(log_ndtr(-z)) / math.log(10.0)
        assert decades(z) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_likelihood_is_quiet_in_warm_up_and_two_sided() -> None:
    lik = AnomalyLikelihood(rows=2)
    rng = np.random.default_rng(0)
    for step in range(300):
        raw = 0.3 + 0.05 * rng.standard_normal((2, 1))
        assert (lik.score_many([0, 1], raw).evidence == 0.0).all(), f"evidence at {step}"
        lik.learn_many([0, 1], raw)
    assert lik.ready([0, 1]).all()
    one = lik.score_many([0], [[1.0]]).evidence[0, 0]
    low = lik.score_many([0], [[0.0]]).evidence[0, 0]
    for _ in range(2):
        lik.learn_many([0], [[1.0]])
    third = lik.score_many([0], [[1.0]]).evidence[0, 0]
    assert 1.0 < one < 5.0 < third, "one surprise is news; a run of them is improbable"
    # Numenta's tail is two-sided: a series suddenly far more predictable than usual is news
    assert low > 1.0


def test_onset_keeps_the_first_red_sample_only() -> None:
    evidence = np.array([2.0, 8.0, 9.0, 40.0, 4.0, 7.0])
    previous = np.concatenate([[0.0], evidence[:-1]])
    assert onset(evidence, previous).tolist() == [2.0, 8.0, 3.0, 3.0, 4.0, 7.0]
    assert squash(10.0) == 0.5


def test_stuck_runs_need_to_be_longer_where_repeats_are_common() -> None:
    run = StuckRun(rows=2)
    for i in range(2000):
        run.learn_many([0, 1], [False, i % 5 == 0])
    rare = run.score_many([0, 0, 0], [1, 3, 5])
    common = run.score_many([1, 1, 1], [1, 3, 20])
    # the floor of the rate (1e-3 a step) makes each repeat 3 decades on a VM that never repeats
    assert rare.tolist() == pytest.approx([3.0, 9.0, 15.0])
    assert common[0] < 1.0 and common[2] > 10.0
    assert run.score_many([0], [0])[0] == 0.0


def test_trend_rises_on_a_slow_ramp_not_on_a_jump_nor_a_fall() -> None:
    rng = random.Random(7)
    trend = TrendGrowth(rows=3)
    for i in range(1500):
        trend.learn_many([0, 1, 2], [STEP * i] * 3, [100.0 + rng.gauss(0, 5) for _ in range(3)])
    best = np.zeros(3)
    for k in range(1, 145):  # 12 hours: +1 a step (a fifth of the noise), +150 at once, -1
        t = STEP * (1500 + k)
        noise = rng.gauss(0, 5)
        x = [100.0 + k + noise, 250.0 + noise, 100.0 - k + noise]
        best = np.maximum(best, trend.score_many([0, 1, 2], [t] * 3, x))
        trend.learn_many([0, 1, 2], [t] * 3, x)
    ramp, jump, fall = best
    assert ramp > 0.5 and fall == 0.0
    assert jump > 0.0, "a jump raises the level too: the trend sees it, less than a ramp"


@pytest.mark.parametrize("make", [
    lambda: RangeNovelty(rows=2), lambda: LevelShift(rows=2), lambda: AnalogPrediction(rows=2)])
def test_scoring_changes_nothing_value_members(make) -> None:  # type: ignore[no-untyped-def]
    member = make()
    rng = random.Random(1)
    for _ in range(100):
        member.learn_many([0, 1], [rng.gauss(10, 2), rng.gauss(5, 1)])
    before = copy.deepcopy(arrays(member))
    first = member.score_many([1, 0], [50.0, -3.0])
    again = member.score_many([1, 0], [50.0, -3.0])
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)
    after = arrays(member)
    assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before)


def test_scoring_changes_nothing_timed_members_and_the_fleet() -> None:
    rng = random.Random(2)
    members = [SeasonalResidual(rows=2), TrendGrowth(rows=2)]
    fleet = FleetDetector(rows=2)
    for i in range(400):
        x = [[rng.gauss(50, 5) for _ in METRIC_FIELDS] for _ in range(2)]
        fleet.learn_many([0, 1], [STEP * i] * 2, x)
        for m in members:
            m.learn_many([0, 1], [STEP * i] * 2, [x[0][0], x[1][0]])
    for learner in (*members, fleet):
        before = copy.deepcopy(arrays(learner))
        if learner is fleet:
            fleet.score_many([1, 0], [STEP * 400] * 2, [[99.0] * 6, [1.0] * 6])
        else:
            learner.score_many([1, 0], [STEP * 400] * 2, [99.0, 1.0])  # type: ignore[attr-defined]
        after = arrays(learner)
        assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before)


def test_rows_stepped_together_are_the_rows_stepped_alone() -> None:
    """A fleet of VMs stepped together (any subset at a time) learns exactly what each VM
    learns on its own: rows never leak into each other."""
    rng = random.Random(3)
    streams = [[[rng.gauss(20 + 10 * v, 3) for _ in METRIC_FIELDS] for _ in range(500)]
               for v in range(3)]
    fleet = FleetDetector(rows=3)
    alone = [VMDetector() for _ in range(3)]
    for i in range(500):
        rows = [v for v in range(3) if (i + v) % 4]  # not every VM reports every step
        x = [streams[v][i] for v in rows]
        s = fleet.score_many(rows, [STEP * i] * len(rows), x)
        fleet.learn_many(rows, [STEP * i] * len(rows), x, s)
        for k, v in enumerate(rows):
            sample = dict(zip(METRIC_FIELDS, streams[v][i], strict=True))
            verdict = alone[v].score_one(STEP * i, sample)
            alone[v].learn_one(STEP * i, sample, verdict)
            assert list(verdict.evidence.values()) == s.evidence[k].tolist()


def test_a_series_fits_in_four_kilobytes() -> None:
    one = sum(a.nbytes for a in arrays(SeriesDetector(rows=1)).values())
    ten = sum(a.nbytes for a in arrays(SeriesDetector(rows=10)).values())
    assert one <= SERIES_BUDGET_BYTES
    assert ten == 10 * one, "the state is a fixed set of numbers per series"
    det = VMDetector()
    sizes = {k: v.nbytes for k, v in arrays(det.fleet).items()}
    rng = random.Random(5)
    for i in range(3000):
        x = {m: rng.gauss(100, 10) for m in METRIC_FIELDS}
        det.learn_one(STEP * i, x, det.score_one(STEP * i, x))
    assert {k: v.nbytes for k, v in arrays(det.fleet).items()} == sizes, "no state grows"


def test_flat_and_huge_series_give_finite_evidence() -> None:
    det = SeriesDetector(rows=3, trend=True)
    for i in range(400):
        x = [0.0, 1e300 * (1 + (i % 3)), 5.0 if i % 50 else 5.5]
        s = det.score_many([0, 1, 2], [STEP * i] * 3, x)
        assert np.isfinite(s.evidence).all() and np.isfinite(s.raw).all()
        det.learn_many([0, 1, 2], [STEP * i] * 3, x, s)
    s = det.score_many([0, 1, 2], [STEP * 400] * 3, [0.0, 2e300, 5.0])
    assert s.evidence[0].tolist() == [0.0] * len(MEMBERS) or s.evidence[0].max() < 2.0
