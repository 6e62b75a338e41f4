"""Windowed features: checked against direct numpy computations on a real trace."""

from __future__ import annotations

import pickle
from collections import deque

import numpy as np
import pytest

from schemas.records import METRIC_FIELDS, MetricEvent
from streams.features import STATS, FeatureExtractor, calendar_features, window_stats


def test_sliding_window_matches_numpy_on_a_real_trace(vm1_events: list[MetricEvent]) -> None:
    fx = FeatureExtractor(tumbling_window_s=300, sliding_window_s=3600)
    for ev in vm1_events[:300]:
        f = fx.update(ev.timestamp, ev.metrics())
    last = vm1_events[299].timestamp
    window = [e for e in vm1_events[:300] if e.timestamp > last - 3600]
    t = np.array([e.timestamp for e in window])
    for m in METRIC_FIELDS:
        x = np.array([getattr(e, m) for e in window])
        assert f[f"{m}.sliding.mean"] == pytest.approx(x.mean())
        assert f[f"{m}.sliding.std"] == pytest.approx(x.std(), abs=1e-6)
        assert f[f"{m}.sliding.min"] == x.min() and f[f"{m}.sliding.max"] == x.max()
        assert f[f"{m}.sliding.last"] == x[-1]
        assert f[f"{m}.sliding.slope_per_s"] == pytest.approx(np.polyfit(t, x, 1)[0],
                                                              rel=1e-6, abs=1e-9)
    assert f["window.sliding.count"] == len(window)


def test_tumbling_window_reports_the_last_closed_bucket() -> None:
    fx = FeatureExtractor(tumbling_window_s=100, sliding_window_s=1000)
    for t in range(0, 100, 10):  # bucket [0, 100): 0..9
        fx.update(float(t), {"cpu_pct": t / 10})
    f = fx.update(105.0, {"cpu_pct": 50.0})  # opens [100, 200): [0, 100) closes
    assert f["cpu_pct.tumbling.mean"] == pytest.approx(4.5)
    assert f["cpu_pct.tumbling.max"] == 9.0 and f["cpu_pct.tumbling.last"] == 9.0
    assert f["cpu_pct.tumbling.slope_per_s"] == pytest.approx(0.1)
    assert f["cpu_pct.tumbling.std"] == pytest.approx(np.std(np.arange(10)))


def test_late_events_leave_windows_unchanged() -> None:
    fx = FeatureExtractor(tumbling_window_s=60, sliding_window_s=120)
    for t in (0.0, 10.0, 20.0):
        before = fx.update(t, {"cpu_pct": t})
    after = fx.update(5.0, {"cpu_pct": 99.0})
    assert fx.late_events_total == 1
    assert {k: v for k, v in after.items() if "sliding" in k} == \
        {k: v for k, v in before.items() if "sliding" in k}


def test_step_is_the_median_interval_and_state_pickles() -> None:
    fx = FeatureExtractor()
    for t in (0, 300, 600, 900, 1500, 1800):
        fx.update(float(t), {"cpu_pct": 1.0})
    assert fx.step_s == 300.0
    clone = pickle.loads(pickle.dumps(fx))
    assert clone.update(2100.0, {"cpu_pct": 2.0}) == fx.update(2100.0, {"cpu_pct": 2.0})


def test_every_metric_has_every_stat_and_calendar_features() -> None:
    f = FeatureExtractor().update(0.0, {})
    for m in METRIC_FIELDS:
        for s in STATS:
            assert f[f"{m}.sliding.{s}"] == 0.0
            assert f"{m}.tumbling.{s}" in f
    # 2013-07-01 00:00 UTC was a Monday
    cal = calendar_features(1372636800.0 + 13 * 3600 + 60)
    assert (cal["hour_of_day"], cal["day_of_week"]) == (13.0, 0.0)
    assert cal["hour_sin"] ** 2 + cal["hour_cos"] ** 2 == pytest.approx(1.0)


def test_the_window_array_follows_the_window_through_caps_gaps_and_pickling() -> None:
    """The sliding window is kept in one growing, compacted array: through the 360-row cap,
    gaps that empty most of it, and a pickle round trip mid-way, its statistics are those
    of the window's rows as a plain list of them (the reference) has them."""
    rng = np.random.default_rng(7)
    fx = FeatureExtractor(tumbling_window_s=60, sliding_window_s=900)
    reference: deque[tuple[float, ...]] = deque(maxlen=360)
    t = 0.0
    for i in range(2500):
        t += 600.0 if i % 700 == 699 else float(rng.integers(1, 4))
        values = {m: float(rng.normal(50, 10)) for m in METRIC_FIELDS}
        fx.update(t, values)
        reference.append((t, *values.values()))
        while reference[0][0] <= t - 900:
            reference.popleft()
        if i == 1234:
            fx = pickle.loads(pickle.dumps(fx))
        if i % 97 == 0 or i % 700 in (698, 699, 700):
            rows = np.array(reference, dtype=float)
            got = fx.features(t)
            assert got["window.sliding.count"] == len(rows)
            expected = window_stats(rows[:, 0], rows[:, 1:])  # from the rows, converted now
            for i, m in enumerate(METRIC_FIELDS):
                for stat in STATS:
                    assert got[f"{m}.sliding.{stat}"] == float(expected[stat][i])


def test_window_stats_are_numpys_bit_for_bit() -> None:
    """window_stats calls numpy's reductions directly, not through ndarray.mean/std/min/max:
    the results must be the very same floats, on the sliding window's strided views too."""
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 7, 90, 129, 360):
        buf = np.empty((720, len(METRIC_FIELDS) + 1))
        rows = buf[5:5 + n]
        rows[:, 0] = 1.7e9 + 10.0 * np.arange(n) + rng.uniform(0, 2, n)
        rows[:, 1:] = rng.standard_gamma(2.0, (n, len(METRIC_FIELDS))) * [1e2, 8e9, 1e7, 5e6,
                                                                          1e8, 3e7]
        times, values = rows[:, 0], rows[:, 1:]
        got = window_stats(times, values)
        dt = times - times.mean()
        expected = {"mean": values.mean(axis=0), "std": values.std(axis=0),
                    "min": values.min(axis=0), "max": values.max(axis=0),
                    "slope_per_s": (dt @ (values - values.mean(axis=0))) / float(dt @ dt)
                    if n > 1 else np.zeros(len(METRIC_FIELDS))}
        for stat, want in expected.items():
            assert got[stat].tobytes() == want.tobytes(), (n, stat)


def test_the_lazy_feature_vector_is_the_whole_vector_bit_for_bit(
        vm1_events: list[MetricEvent]) -> None:
    """update() returns a vector computed when first read: whichever feature is read first
    (the count, a sliding statistic, or any other), every value is the one features() gives,
    and a vector read after its VM learned a newer sample refuses instead of lying."""
    fx = FeatureExtractor(tumbling_window_s=300, sliding_window_s=900)
    firsts = ["window.sliding.count", "cpu_pct.sliding.std",
              "net_tx_bytes_per_s.sliding.slope_per_s", "memory_used_bytes.tumbling.max",
              "hour_cos"]
    for i, ev in enumerate(vm1_events[:200]):
        vector = fx.update(ev.timestamp, ev.metrics())
        expected = fx.features(ev.timestamp)
        first = firsts[i % len(firsts)]
        assert vector[first] == expected[first]
        if i % 3 == 0:  # only the cheap paths were taken: still right
            assert vector["cpu_pct.sliding.mean"] == expected["cpu_pct.sliding.mean"]
        assert dict(vector) == expected and len(vector) == len(expected)
    last = vm1_events[199]
    repeat = fx.update(last.timestamp, last.metrics())  # learns nothing: still current
    assert fx.late_events_total == 1
    unread = fx.update(last.timestamp, last.metrics())
    snapshot = fx.features(last.timestamp)
    assert dict(repeat) == snapshot
    fx.update(vm1_events[200].timestamp, vm1_events[200].metrics())
    assert dict(repeat) == snapshot != fx.features(last.timestamp)  # a vector read stays
    with pytest.raises(RuntimeError, match="newer sample"):
        unread["cpu_pct.sliding.std"]  # one never read cannot be computed any more


def test_surely_moved_never_contradicts_the_window_std(vm1_events: list[MetricEvent]) -> None:
    """The flatline check skips computing a metric's sliding std when two successive values
    in the window are far apart (the std is not 0), or when every value in it is exactly 0
    (the std is exactly 0): whenever it does, the std agrees, on a real trace spliced with
    flat runs (0.0, 0.1 repeated, values a hair apart, values near 1e-150) and a gap that
    empties the window; and is_flatline gives the same answer either way."""
    from agents.anomaly.classify import is_flatline

    fx = FeatureExtractor(tumbling_window_s=300, sliding_window_s=900)
    flat_runs = [0.0, 0.1, 1e-150, 3e-141]
    t, skipped, zeros, flats = 0.0, 0, 0, 0
    for i, ev in enumerate(vm1_events[:500]):
        t += 3000.0 if i == 250 else 60.0
        values = ev.metrics()
        run = (i // 40) % 6
        if run < len(flat_runs):  # a flat stretch: every metric near one value
            values = {m: flat_runs[run] * (1.0 + (1e-16 if i % 3 else 0.0)) for m in values}
        vector = fx.update(t, values)
        full = fx.features(t)
        for m in METRIC_FIELDS:
            if vector.surely_moved(m):
                skipped += 1
                assert full[f"{m}.sliding.std"] != 0.0, (i, m)
            if vector.surely_zero(m):
                zeros += 1
                assert full[f"{m}.sliding.std"] == 0.0, (i, m)
        flat = is_flatline(vector)
        assert flat == is_flatline(full), i
        flats += flat
    assert skipped > 1000, "the fast path was never taken"
    assert zeros > 100, "the zero path was never taken"
    assert flats > 20, "no flatline to tell apart"
