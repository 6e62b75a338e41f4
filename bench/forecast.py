"""Forecast accuracy on the Bitbrains traces: ours against naive baselines, in one run.

Online over every VM and metric: at each sample, every forecaster learns it, then forecasts the
value ``horizon`` seconds ahead (what the agent publishes on receiving a sample; no look-ahead:
the target is not seen until its time comes). A forecast is scored against
the sample whose timestamp is the target time (within half a step; targets that fall in a gap
are skipped), after a one-day warm-up per VM. Per metric and horizon:

* accuracy = 1 - WAPE, WAPE = sum |forecast - actual| / sum |actual| over all VMs;
* coverage of the 80 % and 90 % prediction intervals (ours), the share of targets our point
  forecast hit exactly, and the lowest coverage any interval containing its point forecast
  could have had (per VM, the larger of the level and that share; pooled): series that repeat
  a value most of the time (an idle disk at 0) are covered at those times whatever the width;
* the same accuracy for the baselines: last value, EWMA (alpha 0.3), seasonal naive (the value
  one day before the target time) and River's SNARIMAX alone.

Usage::

    python bench/forecast.py [--data ../shared/data/bitbrains_rnd] [--vms 16] [--days N]

writes ``bench/results/forecast.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from schemas.records import METRIC_FIELDS  # noqa: E402
from streams.traces import bitbrains_files, read_vm  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "bitbrains_rnd"
DEFAULT_OUT = REPO / "bench" / "results" / "forecast.json"
HORIZONS_S = {"5m": 300.0, "15m": 900.0, "60m": 3600.0}
SHORT = {"cpu_pct": "cpu", "memory_used_bytes": "memory", "disk_read_bytes_per_s": "disk_read",
         "disk_write_bytes_per_s": "disk_write", "net_rx_bytes_per_s": "net_rx",
         "net_tx_bytes_per_s": "net_tx"}
WARMUP_S = 86400.0
DAY_S = 86400.0


class PointForecaster(Protocol):
    def learn_one(self, timestamp: float, y: float) -> None: ...
    def forecast_at(self, timestamp: float, horizons_s: Sequence[float]) -> list[float]: ...


class LastValue:
    def __init__(self) -> None:
        self.last = 0.0

    def learn_one(self, timestamp: float, y: float) -> None:
        self.last = y

    def forecast_at(self, timestamp: float, horizons_s: Sequence[float]) -> list[float]:
        return [self.last] * len(horizons_s)


class EWMA:
    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.level: float | None = None

    def learn_one(self, timestamp: float, y: float) -> None:
        self.level = y if self.level is None else self.level + self.alpha * (y - self.level)

    def forecast_at(self, timestamp: float, horizons_s: Sequence[float]) -> list[float]:
        return [self.level or 0.0] * len(horizons_s)


class SeasonalNaive:
    """The value observed one day before the target time (the nearest sample to it)."""

    def __init__(self, step_s: float = 300.0) -> None:
        self.step_s = step_s
        self.history: dict[int, float] = {}
        self.last = 0.0

    def learn_one(self, timestamp: float, y: float) -> None:
        self.history[round(timestamp / self.step_s)] = y
        self.last = y
        horizon = round((timestamp - DAY_S - 2 * 3600.0) / self.step_s)
        for k in [k for k in self.history if k < horizon]:
            del self.history[k]

    def forecast_at(self, timestamp: float, horizons_s: Sequence[float]) -> list[float]:
        out = []
        for h in horizons_s:
            key = round((timestamp + h - DAY_S) / self.step_s)
            out.append(self.history.get(key, self.last))
        return out


class RiverSNARIMAX:
    """River's SNARIMAX(p=6, d=1, q=0) alone, one step per sample.

    With River's default regressor it diverges on these series, so: a StandardScaler in front
    of an SGD linear regression (learning rate 0.005), the series divided by its mean absolute
    value over its first day (fixed from then on), and forecasts clipped to [0, 2 x the largest
    value seen]. Until the first day is over it forecasts the last value.
    """

    def __init__(self, step_s: float = 300.0) -> None:
        from river import linear_model, optim, preprocessing, time_series

        self.model = time_series.SNARIMAX(
            p=6, d=1, q=0, regressor=preprocessing.StandardScaler() | linear_model.LinearRegression(
                optimizer=optim.SGD(0.005), intercept_lr=0.05))
        self.step_s = step_s
        self.first: list[float] = []
        self.scale = 0.0
        self.last = 0.0
        self.peak = 0.0

    def learn_one(self, timestamp: float, y: float) -> None:
        self.last = y
        self.peak = max(self.peak, y)
        if not self.scale:
            self.first.append(abs(y))
            if len(self.first) >= round(DAY_S / self.step_s):
                self.scale = max(sum(self.first) / len(self.first), 1e-9)
            return
        self.model.learn_one(y / self.scale)

    def forecast_at(self, timestamp: float, horizons_s: Sequence[float]) -> list[float]:
        if not self.scale:
            return [self.last] * len(horizons_s)
        steps = [max(1, round(h / self.step_s)) for h in horizons_s]
        path = self.model.forecast(max(steps))
        return [min(max(0.0, float(path[s - 1]) * self.scale), 2 * self.peak) for s in steps]


BASELINES: dict[str, Callable[[], PointForecaster]] = {
    "last_value": LastValue, "ewma": EWMA, "seasonal_naive": SeasonalNaive,
    "snarimax": RiverSNARIMAX,
}


class _Tally:
    """Sums for WAPE and interval coverage of one (forecaster, metric, horizon)."""

    __slots__ = ("abs_actual", "abs_error", "covered_80", "covered_90", "exact", "floor_80",
                 "floor_90", "n")

    def __init__(self) -> None:
        self.abs_error = self.abs_actual = 0.0
        self.n = self.covered_80 = self.covered_90 = self.exact = 0
        self.floor_80 = self.floor_90 = 0.0

    def add(self, forecast: float, actual: float) -> None:
        self.abs_error += abs(forecast - actual)
        self.abs_actual += abs(actual)
        self.n += 1

    def merge(self, other: _Tally) -> None:
        """Add one VM's tally. The floors: an interval that contains its point forecast covers
        every target equal to it, so over this VM no such interval can cover less than
        max(level, share of exact hits)."""
        self.abs_error += other.abs_error
        self.abs_actual += other.abs_actual
        self.n += other.n
        self.covered_80 += other.covered_80
        self.covered_90 += other.covered_90
        self.exact += other.exact
        self.floor_80 += max(0.8 * other.n, other.exact)
        self.floor_90 += max(0.9 * other.n, other.exact)

    @property
    def accuracy(self) -> float:
        return 1.0 - self.abs_error / self.abs_actual if self.abs_actual else math.nan


def _ours() -> Any:
    from agents.forecasting import SeriesForecaster

    return SeriesForecaster()


def run_vm(args: tuple[list[Path], int, float | None, bool]
           ) -> dict[str, dict[str, dict[str, _Tally]]]:
    """Every forecaster over one VM: name -> metric -> horizon -> tally."""
    files, vm, days, with_baselines = args
    samples = list(read_vm(files, vm))
    if days:
        samples = [s for s in samples if s["timestamp"] < samples[0]["timestamp"] + days * DAY_S]
    names = ["ours", *(BASELINES if with_baselines else ())]
    tallies = {n: {m: {h: _Tally() for h in HORIZONS_S} for m in METRIC_FIELDS} for n in names}
    horizons = list(HORIZONS_S.values())
    for metric in METRIC_FIELDS:
        models: dict[str, Any] = {"ours": _ours()}
        if with_baselines:
            models.update({n: make() for n, make in BASELINES.items()})
        # pending[name] = list of (target_ts, horizon_key, forecast, interval or None)
        pending: list[tuple[float, str, str, float, tuple[float, ...] | None]] = []
        start = samples[0]["timestamp"]
        for s in samples:
            t, y = s["timestamp"], float(s[metric])
            keep = []
            for target, hkey, name, f, band in pending:
                if target <= t + 150.0:
                    if abs(target - t) <= 150.0 and target >= start + WARMUP_S:
                        tally = tallies[name][metric][hkey]
                        tally.add(f, y)
                        if band is not None:
                            tally.covered_80 += band[0] <= y <= band[1]
                            tally.covered_90 += band[2] <= y <= band[3]
                            tally.exact += f == y
                    continue
                keep.append((target, hkey, name, f, band))
            pending = keep
            for model in models.values():
                model.learn_one(t, y)
            for name, model in models.items():
                if name == "ours":
                    result = model.forecast_at(t, horizons)
                    for hkey, h, (f, band) in zip(HORIZONS_S, horizons, result, strict=True):
                        pending.append((t + h, hkey, name, f, band))
                else:
                    for hkey, h, f in zip(HORIZONS_S, horizons, model.forecast_at(t, horizons),
                                          strict=True):
                        pending.append((t + h, hkey, name, f, None))
    return tallies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--vms", type=int, default=None, help="only the first N VMs")
    parser.add_argument("--days", type=float, default=None, help="only the first D days of "
                        "each VM")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    files = bitbrains_files(args.data, args.vms)
    jobs = [(paths, vm, args.days, not args.no_baselines)
            for vm, paths in files.items()]
    started = time.perf_counter()
    totals: dict[str, dict[str, dict[str, _Tally]]] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for i, result in enumerate(pool.map(run_vm, jobs), start=1):
            for name, per_metric in result.items():
                for metric, per_h in per_metric.items():
                    for h, tally in per_h.items():
                        totals.setdefault(name, {}).setdefault(metric, {}).setdefault(
                            h, _Tally()).merge(tally)
            print(f"[{i}/{len(jobs)}] VMs done ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr)
    report = build_report(totals)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


def build_report(totals: dict[str, dict[str, dict[str, _Tally]]]) -> dict[str, Any]:
    def r(x: float) -> float:
        return round(x, 4)

    ours = {SHORT[m]: {h: {"accuracy": r(t.accuracy),
                           "coverage_80": r(t.covered_80 / t.n) if t.n else math.nan,
                           "coverage_90": r(t.covered_90 / t.n) if t.n else math.nan,
                           "exact_share": r(t.exact / t.n) if t.n else math.nan,
                           "coverage_80_floor": r(t.floor_80 / t.n) if t.n else math.nan,
                           "coverage_90_floor": r(t.floor_90 / t.n) if t.n else math.nan}
                       for h, t in per_h.items()}
            for m, per_h in totals.get("ours", {}).items()}
    baselines = {name: {SHORT[m]: {h: {"accuracy": r(t.accuracy)} for h, t in per_h.items()}
                        for m, per_h in per_metric.items()}
                 for name, per_metric in totals.items() if name != "ours"}
    return {"ours": ours, "baselines": baselines}


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{'metric':<11}{'h':>4}  {'ours':>7} {'cov80':>6} {'cov90':>6} {'floor80':>7} "
             f"{'floor90':>7}  "
             + " ".join(f"{n:>14}" for n in report["baselines"])]
    for metric, per_h in report["ours"].items():
        for h, v in per_h.items():
            base = " ".join(f"{report['baselines'][n][metric][h]['accuracy']:>14.3f}"
                            for n in report["baselines"])
            lines.append(f"{metric:<11}{h:>4}  {v['accuracy']:>7.3f} {v['coverage_80']:>6.3f} "
                         f"{v['coverage_90']:>6.3f} {v['coverage_80_floor']:>7.3f} "
                         f"{v['coverage_90_floor']:>7.3f}  {base}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
