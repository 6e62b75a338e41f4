"""The series forecaster: selection, intervals, state, and recovery after a regime change."""

from __future__ import annotations

import math
import pickle
import statistics
from pathlib import Path

import numpy as np
import pytest

from agents.forecasting import SeriesForecaster, kernels
from agents.forecasting.candidates import CANDIDATES
from agents.forecasting.layout import D_HW_PATH, I_HW_PATH_LEN, KC
from agents.forecasting.page_hinkley import PageHinkley
from streams.traces import bitbrains_files, read_vm

SPLICE = 864  # three days of 5-minute samples


def spliced(bitbrains_dir: Path, metric: str) -> tuple[list[float], list[float], list[float]]:
    """VM 2's first three days, then VM 9 from the same point on: a regime change in a real
    trace. Returns (timestamps, spliced values, VM 9's own values)."""
    files = bitbrains_files(bitbrains_dir)
    a = list(read_vm(files[2], 2, limit=1800))
    b = list(read_vm(files[9], 9, limit=1800))
    n = min(len(a), len(b))
    t = [x["timestamp"] for x in a[:n]]
    other = [x[metric] for x in b[:n]]
    return t, [x[metric] for x in a[:SPLICE]] + other[SPLICE:n], other


def one_step_errors(t: list[float], y: list[float]) -> tuple[list[tuple[float, float]], list[int]]:
    """(|error|, |actual|) of 5-minute-ahead forecasts per sample, and the drift indices."""
    fc = SeriesForecaster()
    errors: list[tuple[float, float]] = [(0.0, 0.0)]
    drifts = []
    prev = 0.0
    for i, (ti, yi) in enumerate(zip(t, y, strict=True)):
        if i:
            errors.append((abs(prev - yi), abs(yi)))
        fc.learn_one(ti, yi)
        if fc.drift_detected:
            drifts.append(i)
        prev = fc.forecast_at(ti, [300.0])[0][0]
    return errors, drifts


def wape(errors: list[tuple[float, float]], lo: int, hi: int) -> float:
    window = errors[lo:hi]
    return sum(e for e, _ in window) / max(sum(a for _, a in window), 1e-12)


@pytest.mark.parametrize("metric", ["cpu_pct", "net_rx_bytes_per_s", "memory_used_bytes"])
def test_error_returns_to_its_level_within_a_day_after_a_regime_change(
        bitbrains_dir: Path, metric: str) -> None:
    t, y, other = spliced(bitbrains_dir, metric)
    errors, drifts = one_step_errors(t, y)
    # A forecaster that saw the new regime all along, scored over the same window.
    reference, _ = one_step_errors(t, other)
    day = 288
    after = wape(errors, SPLICE + day // 2, SPLICE + day)
    settled = wape(reference, SPLICE + day // 2, SPLICE + day)
    assert after <= 1.25 * settled, (after, settled)
    assert any(SPLICE <= i < SPLICE + 72 for i in drifts), f"no drift flagged: {drifts}"


def test_selection_prefers_the_seasonal_candidates_on_a_daily_series() -> None:
    fc = SeriesForecaster()
    for i in range(288 * 6):
        fc.learn_one(300.0 * i, 100 + 50 * math.sin(2 * math.pi * i / 288))
    seasonal = {"daily", "holt_winters"}
    chosen = fc.chosen_name(2)  # 60 minutes ahead
    if chosen == "combo":
        at = fc.fleet.offsets.weights + 2 * KC
        weights = dict(zip(CANDIDATES, fc.fleet.f32[0, at:at + KC].tolist(), strict=True))
        assert sum(weights[c] for c in seasonal) > 0.5, weights
    else:
        assert chosen in seasonal


def test_a_short_period_is_found_and_forecast(bitbrains_dir: Path) -> None:
    """VM 12's memory spikes every ~45 minutes: the periodic candidate finds a period and,
    with the learned combination, beats the last value clearly 15 minutes ahead."""
    files = bitbrains_files(bitbrains_dir)
    samples = list(read_vm(files[12], 12, limit=2600))
    fc = SeriesForecaster()
    err = naive = 0.0
    pending: list[tuple[float, float, float]] = []
    for i, s in enumerate(samples):
        t, y = s["timestamp"], s["memory_used_bytes"]
        if i >= 288 * 2:  # after two days
            for target, f, last in pending:
                if abs(target - t) < 150.0:
                    err += abs(f - y)
                    naive += abs(last - y)
        pending = [p for p in pending if p[0] > t + 150.0]
        fc.learn_one(t, y)
        pending.append((t + 900.0, fc.forecast_at(t, [900.0])[0][0], y))
    assert fc.period > 0
    assert err < 0.8 * naive, (err, naive)


def hw_path(fc: SeriesForecaster) -> list[float]:
    """The Holt-Winters candidate's path: its next hours' forecasts (empty before a season)."""
    n = int(fc.fleet.i64[0, I_HW_PATH_LEN])
    return fc.fleet.f64[0, D_HW_PATH:D_HW_PATH + n].tolist()


def test_holt_winters_forecasts_nothing_before_a_full_season() -> None:
    fc = SeriesForecaster()
    for i in range(12 * 20):  # 20 hours
        fc.learn_one(300.0 * i, 10.0)
    assert hw_path(fc) == []
    for i in range(12 * 20, 12 * 30):
        fc.learn_one(300.0 * i, 10.0)
    assert hw_path(fc) == pytest.approx([10.0] * 3)


@pytest.mark.parametrize("metric", ["cpu_pct", "memory_used_bytes"])
def test_intervals_keep_their_coverage_on_a_real_trace(bitbrains_dir: Path, metric: str) -> None:
    """80 % and 90 % intervals (15 minutes ahead) cover 75-85 % and 86-94 % of a real week
    after the first day (a loose band: one VM, one week)."""
    files = bitbrains_files(bitbrains_dir)
    samples = list(read_vm(files[5], 5, limit=288 * 8))
    fc = SeriesForecaster()
    hits80 = hits90 = n = 0
    pending: list[tuple[float, tuple[float, float, float, float]]] = []
    for i, s in enumerate(samples):
        t, y = s["timestamp"], s[metric]
        for target, band in pending:
            if abs(target - t) < 150.0 and i >= 288:
                n += 1
                hits80 += band[0] <= y <= band[1]
                hits90 += band[2] <= y <= band[3]
        pending = [p for p in pending if p[0] > t + 150.0]
        fc.learn_one(t, y)
        pending.append((t + 900.0, fc.forecast_at(t, [900.0])[0][1]))
    assert 0.75 <= hits80 / n <= 0.85 and 0.86 <= hits90 / n <= 0.94, (hits80 / n, hits90 / n)


def test_intervals_are_ordered_and_never_negative(bitbrains_dir: Path) -> None:
    files = bitbrains_files(bitbrains_dir)
    fc = SeriesForecaster()
    for s in read_vm(files[1], 1, limit=600):
        fc.learn_one(s["timestamp"], s["disk_read_bytes_per_s"])
        for point, (lo80, hi80, lo90, hi90) in fc.forecast_at(s["timestamp"]):
            assert 0.0 <= lo90 <= lo80 <= point <= hi80 <= hi90


def test_pickle_round_trip_and_bounded_state(bitbrains_dir: Path) -> None:
    files = bitbrains_files(bitbrains_dir)
    samples = list(read_vm(files[1], 1, limit=1500))
    fc = SeriesForecaster()
    sizes = []
    for i, s in enumerate(samples[:1000]):
        fc.learn_one(s["timestamp"], s["net_tx_bytes_per_s"])
        if i % 200 == 199:
            sizes.append(len(pickle.dumps(fc)))
    clone = pickle.loads(pickle.dumps(fc))
    for s in samples[1000:]:
        for f in (fc, clone):
            f.learn_one(s["timestamp"], s["net_tx_bytes_per_s"])
        assert clone.forecast_at(s["timestamp"]) == fc.forecast_at(s["timestamp"])
    assert max(sizes) < 12 * 1024 and sizes[-1] <= 1.1 * sizes[1], sizes
    assert len(CANDIDATES) == len(set(CANDIDATES))


def _learned(n: int = 1500) -> SeriesForecaster:
    fc = SeriesForecaster()
    for i in range(n):  # a daily cycle, a 40-minute job and some noise
        fc.learn_one(300.0 * i, 30.0 + 20.0 * math.sin(2 * math.pi * i / 288)
                     + (15.0 if i % 8 == 0 else 0.0) + (i * 7919 % 13) / 4.0)
    return fc


class _RiverHourlyHoltWinters:
    """The reference: River's own HoltWinters on the same hourly means (shifted by one), with
    its season restarted as differences from the first day's mean once it starts."""

    def __init__(self) -> None:
        from river import time_series

        self.model = time_series.HoltWinters(alpha=0.1, beta=0.01, gamma=0.5, seasonality=24)
        self.hour, self.total, self.count = -1, 0.0, 0
        self.path: list[float] = []

    def learn_one(self, timestamp: float, y: float) -> None:
        hour = int(timestamp // 3600.0)
        model = self.model
        if hour != self.hour and self.count:
            started = model._initialized
            model.learn_one(self.total / self.count + 1.0)
            self.total, self.count = 0.0, 0
            if model._initialized and not started:
                level = model.level[-1]
                model.season.clear()
                model.season.extend(v - level for v in model._first_values)
            self.path = ([float(v) - 1.0 for v in model.forecast(horizon=3)]
                         if model._initialized else [])
        self.hour = hour
        self.total += y
        self.count += 1


def test_page_hinkley_is_rivers_step_for_step() -> None:
    """The compiled Page-Hinkley signals exactly where River's does, through level shifts
    up and down, resets after each change and a pickle round trip."""
    from river import drift

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(level, 1.0, 700) for level in (1, 4, 0.5, 0.5, 9, 2)])
    for kwargs in ({}, {"min_instances": 100, "delta": 0.1, "threshold": 50.0},
                   {"min_instances": 10, "delta": 0.5, "threshold": 5.0, "alpha": 0.99}):
        ours, river = PageHinkley(**kwargs), drift.PageHinkley(**kwargs)
        flags = []
        for i, v in enumerate(x.tolist()):
            ours.update(v)
            river.update(v)
            assert ours.drift_detected == river.drift_detected, (kwargs, i)
            flags.append(ours.drift_detected)
            if i == 1000:
                ours = pickle.loads(pickle.dumps(ours))
        assert 2 <= sum(flags) < 100, kwargs


@pytest.mark.parametrize("metric", ["cpu_pct", "memory_used_bytes", "net_rx_bytes_per_s"])
def test_holt_winters_is_rivers_step_for_step(bitbrains_dir: Path, metric: str) -> None:
    """The compiled Holt-Winters gives River's HoltWinters' forecasts, to the last bit, on a
    month of a real VM (and through a pickle round trip half-way)."""
    ours, river = SeriesForecaster(), _RiverHourlyHoltWinters()
    rows = list(read_vm(bitbrains_files(bitbrains_dir)[3], 3))
    for i, row in enumerate(rows):
        t, y = float(row["timestamp"]), float(row[metric])
        ours.learn_one(t, y)
        river.learn_one(t, y)
        if i == len(rows) // 2:
            ours = pickle.loads(pickle.dumps(ours))
        assert hw_path(ours) == river.path
    assert len(river.path) == 3  # a full season was learned


def test_forecasts_between_grid_times_are_remembered_exactly() -> None:
    """forecast_at remembers the newest timestamp's forecasts until the next sample: a
    subset of horizons, or asking twice, gives what a fresh forecaster gives."""
    fc = _learned(1000)
    for i in range(1000, 1100):
        t = 300.0 * i + (0.0 if i % 2 else 10.0)  # off the grid every other sample
        fc.learn_one(t, 40.0 + (i % 5))
        clone = pickle.loads(pickle.dumps(fc))  # no memo
        full = clone.forecast_at(t)
        assert fc.forecast_at(t, [3600.0, 300.0]) == [full[2], full[0]]
        assert fc.forecast_at(t) == full == fc.forecast_at(t)
        assert fc.forecast_at(t + 5.0) == clone.forecast_at(t + 5.0)
        assert fc.forecast(2) == [p for p, _ in full[:2]]


def test_medians_are_statistics_median_bit_for_bit() -> None:
    rng = [((i * 2654435761) % 1000) / 7.0 for i in range(60)]
    fc = SeriesForecaster()
    flat = np.empty(len(CANDIDATES) - 3)
    for n_values, y in enumerate(rng, 1):
        fc.learn_one(300.0 * n_values, y)
        kernels.flat_candidates(fc.fleet.f32, fc.fleet.f64, fc.fleet.i64, 0, flat)
        recent = np.float32(rng[max(0, n_values - 48):n_values]).tolist()
        assert flat[4:9].tolist() == [float(statistics.median(recent[-n:]))
                                      for n in (3, 6, 12, 24, 48)], n_values


def test_a_ten_second_stream_keeps_the_same_small_state() -> None:
    """State does not grow with the reporting rate: forecasts are remembered on a time grid."""
    fc = SeriesForecaster()
    for i in range(6 * 360 * 3):  # three hours at one sample per 10 s
        fc.learn_one(10.0 * i, 5.0 + (i % 7))
    assert fc.pending <= 14
    assert len(pickle.dumps(fc)) < 12 * 1024


def test_the_pipeline_publishes_a_drift_event_on_a_regime_change(bitbrains_dir: Path) -> None:
    """Through agents.pipeline: the splice makes a forecaster drift; the event is published
    as a valid vm.drift record naming the metric."""
    import orjson
    from jsonschema import Draft202012Validator

    from agents.pipeline import PipelineConfig, new_state, process_event
    from schemas.records import MetricEvent, to_json
    from schemas.registry import schema_for

    files = bitbrains_files(bitbrains_dir)
    a = list(read_vm(files[2], 2, limit=1200))
    b = list(read_vm(files[9], 9, limit=1200))
    cfg = PipelineConfig()
    state = new_state(cfg)
    drifts = []
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        sample = x if i < SPLICE else {**y, "vm_id": x["vm_id"], "host_id": x["host_id"],
                                       "timestamp": x["timestamp"]}
        out = process_event(state, MetricEvent.from_dict(sample), cfg)
        drifts.extend((i, d) for d in out.drifts)
    after = [d for i, d in drifts if SPLICE <= i < SPLICE + 72]
    assert after, f"no drift event after the splice: {[i for i, _ in drifts]}"
    validator = Draft202012Validator(schema_for("vm.drift"))
    for _, d in drifts:
        validator.validate(orjson.loads(to_json(d)))
    assert {d.metric for d in after} & {"cpu_pct", "net_rx_bytes_per_s", "memory_used_bytes"}
