"""The backtest's pictures (PNG, matplotlib's Agg backend: no display needed).

* :func:`plot_incidents`: a series (a VM: its cpu and memory) over the whole run, the labelled
  anomaly windows shaded green, our incidents shaded in their severity's color from open to
  resolve, with a marker and the class at each opening;
* :func:`plot_forecast`: the last days of a series against the forecast made one horizon
  earlier, with its 90 % interval shaded;
* :func:`plot_allocation`: a VM's cpu cores and memory in use against what the
  recommendations would have allocated, and the recorded provisioning.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np

from streams.backtest.engine import SeriesResult
from streams.backtest.nab_scoring import FloatArray, probationary_length

SEVERITY_COLORS = {"low": "#f2c14e", "medium": "#f08a24", "high": "#d7263d",
                   "critical": "#7b0d1e"}
WINDOW_COLOR = "#2a9d8f"
GIB = float(2**30)
DAY_S = 86400.0
_DPI = 110


def _dates(t: FloatArray) -> Any:
    return (np.asarray(t) * 1e6).astype("datetime64[us]")


def _finish(fig: Any, ax: Any, path: Path) -> Path:
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _shade_incidents(axes: list[Any], r: SeriesResult, label_axis: Any) -> None:
    """Incidents as spans in their severity's color, a marker at each opening, and the class
    named above the markers (skipping a name that would overlap the previous one)."""
    end = float(r.t[-1]) if len(r.t) else 0.0
    first = float(r.t[0]) if len(r.t) else 0.0
    min_gap = 0.12 * max(end - first, 1.0)  # a class name is about a tenth of the width
    shown: set[str] = set()
    last_label = -math.inf
    for inc in sorted(r.incidents, key=lambda i: i.opened_at):
        color = SEVERITY_COLORS.get(inc.severity, "#d7263d")
        stop = inc.resolved_at if inc.resolved_at is not None else end
        span = _dates(np.array([inc.opened_at, max(stop, inc.opened_at + 1.0)]))
        for ax in axes:
            label = f"incident, {inc.severity}" if inc.severity not in shown else None
            ax.axvspan(span[0], span[1], color=color, alpha=0.35, label=label, lw=0)
            shown.add(inc.severity)
        trans = label_axis.get_xaxis_transform()
        label_axis.plot(span[0], 1.0, marker="v", color=color, markersize=7, transform=trans,
                        clip_on=False, zorder=4)
        if inc.opened_at - last_label >= min_gap:
            label_axis.text(span[0], 1.03, inc.anomaly_class, transform=trans, fontsize=7,
                            color=color, ha="center", va="bottom")
            last_label = inc.opened_at


def _shade_windows(ax: Any, r: SeriesResult) -> None:
    if r.labelled and r.rows:  # NAB scores nothing in the probation period
        last = min(int(probationary_length(r.rows)), r.rows - 1)
        ax.axvspan(_dates(r.t[:1])[0], _dates(r.t[last:last + 1])[0], color="#bbbbbb",
                   alpha=0.18, lw=0, label="probation (not scored)")
    for i, (a, b) in enumerate(r.windows):
        ax.axvspan(_dates(r.t[a:a + 1])[0], _dates(r.t[b:b + 1])[0], color=WINDOW_COLOR,
                   alpha=0.18, lw=0, label="labelled anomaly window" if i == 0 else None)


def plot_incidents(r: SeriesResult, path: Path, title: str) -> Path:
    """The series (or the VM's cpu and memory) with label windows and our incidents."""
    x = _dates(r.t)
    if r.kind == "vm":
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 5.2), sharex=True)
        ax1.plot(x, r.values["cpu_pct"], lw=0.6, color="#264653")
        ax1.set_ylabel("cpu %")
        ax2.plot(x, r.values["memory_used_bytes"] / GIB, lw=0.6, color="#6d597a")
        ax2.set_ylabel("memory used (GiB)")
        axes = [ax1, ax2]
    else:
        fig, ax1 = plt.subplots(figsize=(11, 3.8))
        ax1.plot(x, r.values[r.metric], lw=0.6, color="#264653", label=r.metric)
        ax1.set_ylabel(r.metric)
        axes = [ax1]
    _shade_windows(ax1, r)
    _shade_incidents(axes, r, ax1)
    ax1.set_title(title, fontsize=10, pad=16)
    handles, labels = ax1.get_legend_handles_labels()
    if handles:
        ax1.legend(handles, labels, loc="upper left", fontsize=7, framealpha=0.85)
    return _finish(fig, axes[-1], path)


def plot_forecast(r: SeriesResult, path: Path, title: str, days: float = 3.0) -> Path | None:
    """The last ``days`` of the series against its shortest-horizon forecast and 90 % band."""
    fc = r.forecast
    if len(fc.get("at", ())) == 0 or not len(r.t):
        return None
    start = float(r.t[-1]) - days * DAY_S
    seen = r.t >= start
    ahead = fc["at"] >= start
    actual = r.values[r.metric]
    scale, unit = (GIB, " (GiB)") if r.metric == "memory_used_bytes" else (1.0, "")
    fig, ax = plt.subplots(figsize=(11, 3.8))
    ax.fill_between(_dates(fc["at"][ahead]), fc["lower_90"][ahead] / scale,
                    fc["upper_90"][ahead] / scale, color="#e9c46a", alpha=0.45, lw=0,
                    label="90 % interval", step="mid")
    ax.plot(_dates(fc["at"][ahead]), fc["value"][ahead] / scale, lw=0.9, color="#e76f51",
            label="forecast", drawstyle="steps-mid")
    ax.plot(_dates(r.t[seen]), actual[seen] / scale, lw=0.8, color="#264653", label="actual")
    ax.set_ylabel(r.metric + unit)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.85)
    return _finish(fig, ax, path)


def plot_allocation(r: SeriesResult, path: Path, title: str) -> Path:
    """A VM's use against the recommended allocation and the recorded provisioning."""
    x = _dates(r.t)
    v = r.values
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 5.2), sharex=True)
    for ax, used, alloc, prov, scale, unit in (
            (ax1, v["cpu_cores_used"], v["allocated_cores"], v["provisioned_cores"], 1.0,
             "cpu (cores)"),
            (ax2, v["memory_used_bytes"], v["allocated_bytes"], v["provisioned_bytes"], GIB,
             "memory (GiB)")):
        ax.plot(x, prov / scale, lw=0.8, ls="--", color="#999999", label="provisioned (trace)")
        ax.plot(x, alloc / scale, lw=1.1, color="#2a9d8f", drawstyle="steps-post",
                label="allocated (recommendations)")
        ax.plot(x, used / scale, lw=0.5, color="#264653", label="used")
        short = used > alloc
        if short.any():
            ax.scatter(x[short], used[short] / scale, s=4, color="#d7263d", zorder=3,
                       label="short (used > allocated)")
        ax.set_ylabel(unit)
        ax.legend(loc="upper left", fontsize=7, framealpha=0.85)
    ax1.set_title(title, fontsize=10)
    return _finish(fig, ax2, path)
