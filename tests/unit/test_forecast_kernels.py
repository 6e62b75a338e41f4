"""The compiled forecaster against the plain-Python one it replaced, bit for bit.

``forecast_reference.py`` is the series forecaster as it was before its arithmetic was
compiled over rows of arrays. On real traces, at their own 5-minute step and with jittered
steps and gaps, both must give the same errors scored, the same drifts and the same forecasts
and intervals, to the last bit; and many rows learned together must give what each learns
alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.forecasting.fleet import FleetForecaster, bands
from agents.forecasting.series import SeriesForecaster
from agents.forecasting.vm import VMForecaster
from schemas.records import METRIC_FIELDS, MetricEvent
from streams.traces import bitbrains_files, read_vm
from tests.unit.forecast_reference import SeriesForecaster as Reference


def _times(rows: list[dict[str, float]], jitter: bool) -> list[float]:
    if not jitter:
        return [float(r["timestamp"]) for r in rows]
    rng = np.random.default_rng(3)
    t, out = 0.0, []
    for i in range(len(rows)):
        t += 3600.0 if i % 500 == 499 else float(rng.choice([10.0, 60.0, 299.0, 300.0, 301.0]))
        out.append(t)
    return out


@pytest.mark.parametrize("jitter", [False, True])
@pytest.mark.parametrize("vm,metric", [(6, "cpu_pct"), (9, "disk_read_bytes_per_s"),
                                       (2, "memory_used_bytes"), (1, "net_tx_bytes_per_s")])
def test_the_kernels_forecast_what_the_python_forecaster_did(
        bitbrains_dir: Path, vm: int, metric: str, jitter: bool) -> None:
    rows = list(read_vm(bitbrains_files(bitbrains_dir)[vm], vm))[:3000]
    ours, reference = SeriesForecaster(), Reference()
    drifts = 0
    for i, (t, row) in enumerate(zip(_times(rows, jitter), rows, strict=True)):
        y = float(row[metric])
        ours.learn_one(t, y)
        reference.learn_one(t, y)
        assert ours.scored_now == reference.scored_now, i
        assert ours.drift_detected == reference.drift_detected, i
        if reference.drift_detected:
            drifts += 1
            assert ours.model_before_drift == reference.model_before_drift, i
        assert ours.forecast_at(t) == reference.forecast_at(t), i
        assert ours.chosen_names(t) == [reference.chosen_name(h) for h in range(3)], i
    assert ours.drifts_total == reference.drifts_total == drifts


def test_rows_learned_together_learn_what_each_learns_alone(bitbrains_dir: Path) -> None:
    """A fleet of 12 rows (two VMs' six metrics) stepped a batch at a time, in mixed orders,
    ends with every row's state and forecasts equal to a one-row forecaster's."""
    files = bitbrains_files(bitbrains_dir)
    series = [(vm, m) for vm in (3, 7) for m in METRIC_FIELDS]
    data = {vm: list(read_vm(files[vm], vm))[:1200] for vm in (3, 7)}
    fleet = FleetForecaster(rows=len(series))
    alone = [SeriesForecaster() for _ in series]
    rng = np.random.default_rng(1)
    for i in range(1200):
        order = rng.permutation(len(series))[:rng.integers(1, len(series) + 1)]
        chosen = np.sort(order)
        t = np.array([float(data[series[r][0]][i]["timestamp"]) for r in chosen])
        y = np.array([float(data[series[r][0]][i][series[r][1]]) for r in chosen])
        res = fleet.learn_many(chosen.astype(np.int64), t, y)
        for k, r in enumerate(chosen.tolist()):
            alone[r].learn_one(t[k], y[k])
            want = alone[r].scored_now
            assert (None if np.isnan(res[k, 1]) else (res[k, 1], res[k, 2])) == want
    t_end = np.array([float(data[vm][-1]["timestamp"]) for vm, _ in series])
    out, _ = fleet.forecast_many(np.arange(len(series), dtype=np.int64), t_end)
    for r, fc in enumerate(alone):
        assert np.array_equal(fleet.f32[r], fc.fleet.f32[0])
        assert np.array_equal(fleet.f64[r], fc.fleet.f64[0])
        assert np.array_equal(fleet.i64[r], fc.fleet.i64[0])
        assert bands(out[r]) == fc.forecast_at(float(t_end[r]))


def test_a_vm_forecaster_is_one_series_forecaster_per_metric(bitbrains_dir: Path) -> None:
    rows = list(read_vm(bitbrains_files(bitbrains_dir)[5], 5))[:800]
    vm = VMForecaster()
    alone = {m: SeriesForecaster() for m in METRIC_FIELDS}
    for row in rows:
        ev = MetricEvent.from_dict(row)
        drifted = vm.learn_one(ev)
        for m, fc in alone.items():
            fc.learn_one(ev.timestamp, float(row[m]))
        assert drifted == [m for m, fc in alone.items() if fc.drift_detected]
    t = float(rows[-1]["timestamp"])
    for m, fc in alone.items():
        assert vm.series[m].forecast_at(t) == fc.forecast_at(t)
        assert vm.series[m].chosen_name(2) == fc.chosen_name(2)
