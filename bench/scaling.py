"""Right-sizing on the Bitbrains traces: scaling policies side by side, in one run.

Each VM's samples are replayed through every policy. Per sample the demand is the CPU in use, in
cores (``CPU usage [MHZ] / (CPU capacity provisioned [MHZ] / CPU cores)``), and the memory in
use, in bytes (``Memory usage [KB] * 1024``). An online policy learns each sample, then gives the
allocation (cores, bytes) in effect from the next sample on; before its first decision the VM has
what ``allocation()`` says unprompted. Allocations are floored at 0.025 core and 64 MiB.
Rows with no CPU cores or capacity (the VM not reporting) are dropped, like any other gap: the
allocation is sampled at each sample, whatever the time since the previous one.

After a one-day warm-up per VM, over all scored VM-steps of the fleet, per resource:

* slack = sum(allocated - used) / sum(allocated), signed (a short step counts against it);
* shortfall = the share of steps where used > allocated;
* changes per VM-day = steps whose allocation differs from the previous step's, divided by the
  scored time (from the end of the warm-up to the VM's last sample) in days.

Policies: ``static`` (the trace's provisioned capacity), ``vpa`` (Kubernetes VPA-style),
``reactive`` (a threshold scaler), ``limit`` (perfect foresight at four changes a day: the
peak of the actual use over fixed 6-hour blocks), see ``bench/scaling_policies.py``; and
``ours``, from ``agents.scaling.bench_policy.make`` when that module exists.

Usage::

    python bench/scaling.py [--data ../shared/data/bitbrains_rnd] [--vms N] [--days D]
                            [--out bench/results/scaling.json] [--plot bench/results/scaling.png]

writes the JSON report and a figure of allocation against use for a few VMs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.placement_replay import replay as replay_placement  # noqa: E402
from bench.scaling_policies import (  # noqa: E402
    DAY_S,
    GIB,
    FloatArray,
    Reactive,
    VPAStyle,
    floored,
    limit_allocation,
    static_allocation,
)
from streams.backtest.allocation import Tally, score  # noqa: E402
from streams.traces import bitbrains_files  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "bitbrains_rnd"
DEFAULT_OUT = REPO / "bench" / "results" / "scaling.json"
DEFAULT_PLOT = REPO / "bench" / "results" / "scaling.png"
WARMUP_S = DAY_S
LIMIT_BLOCK_S = 6 * 3600.0
RESOURCES = ("cpu", "memory")
OURS = "ours"
STATIC, VPA, REACTIVE, LIMIT = "static", "vpa", "reactive", "limit"
ORDER = (STATIC, VPA, REACTIVE, LIMIT, OURS)
# CSV columns: timestamp, cores, capacity MHz, usage MHz, memory capacity KB, memory usage KB
_COLUMNS = (0, 1, 2, 3, 5, 6)


class Policy(Protocol):
    """An online scaling policy for one VM, built by a :data:`Factory` from the VM's provisioned
    capacity at its first sample and the trace's step. The harness calls ``allocation()`` before
    each sample (the allocation in effect at that sample, floored at 0.025 core and 64 MiB),
    then ``learn_one`` with that sample's demand; nothing later is shown to it."""

    def learn_one(self, t: float, cpu_cores: float, mem_bytes: float) -> None: ...
    def allocation(self) -> tuple[float, float]: ...   # (cores, bytes) to use from the next step on


Factory = Callable[[float, float, float], Policy]  # (capacity_cores, capacity_bytes, step_s)


def _ours_factory(capacity_cores: float, capacity_bytes: float, step_s: float) -> Policy:
    """Our policy for one VM: ``agents.scaling.bench_policy.make`` with the same arguments."""
    from agents.scaling.bench_policy import make  # type: ignore[import-not-found,unused-ignore]

    policy: Policy = make(capacity_cores, capacity_bytes, step_s)
    return policy


POLICIES: dict[str, Factory] = {VPA: VPAStyle, REACTIVE: Reactive, OURS: _ours_factory}


def ours_available() -> bool:
    """Whether ``agents.scaling.bench_policy`` imports; a warning on stderr when it is missing.
    Any other import error (a bug inside the module) is raised."""
    try:
        import agents.scaling.bench_policy  # type: ignore[import-not-found,unused-ignore] # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name not in ("agents.scaling", "agents.scaling.bench_policy"):
            raise
        print(f"warning: {exc}; skipping the {OURS!r} policy", file=sys.stderr)
        return False
    return True


@dataclass
class VMTrace:
    """One VM's samples: time (s), demand (cores, bytes) and provisioned capacity."""

    vm: int
    t: FloatArray
    cpu: FloatArray
    mem: FloatArray
    cap_cores: FloatArray
    cap_bytes: FloatArray

    @property
    def step_s(self) -> float:
        return float(np.median(np.diff(self.t))) if len(self.t) > 1 else 300.0


def load_vm(files: Sequence[Path], vm: int, days: float | None = None) -> VMTrace:
    """A VM's raw rows across its month files, in time order (rows not after the last kept one,
    where month files overlap, are dropped), optionally only its first ``days`` days."""
    parts = [np.loadtxt(f, delimiter=";", skiprows=1, usecols=_COLUMNS, ndmin=2) for f in files]
    rows = np.concatenate(parts) if parts else np.empty((0, len(_COLUMNS)))
    if len(rows):
        before = np.maximum.accumulate(np.r_[-np.inf, rows[:-1, 0]])
        rows = rows[rows[:, 0] > before]
    rows = rows[(rows[:, 1] > 0) & (rows[:, 2] > 0)]
    if days is not None and len(rows):
        rows = rows[rows[:, 0] < rows[0, 0] + days * DAY_S]
    t, cores, cap_mhz, use_mhz, mem_cap_kb, mem_use_kb = rows.T
    return VMTrace(vm, t, use_mhz / (cap_mhz / cores), mem_use_kb * 1024.0, cores,
                   mem_cap_kb * 1024.0)


def replay(policy: Policy, trace: VMTrace) -> tuple[FloatArray, FloatArray]:
    """The allocation in effect at each sample: ``allocation()`` before sample i was learnt."""
    n = len(trace.t)
    cores, mem = np.empty(n), np.empty(n)
    for i, (t, c, m) in enumerate(zip(trace.t.tolist(), trace.cpu.tolist(), trace.mem.tolist(),
                                      strict=True)):
        cores[i], mem[i] = floored(*policy.allocation())
        policy.learn_one(t, c, m)
    return cores, mem


def allocations(name: str, trace: VMTrace) -> tuple[FloatArray, FloatArray]:
    if name == STATIC:
        return static_allocation(trace.cap_cores, trace.cap_bytes)
    if name == LIMIT:
        return limit_allocation(trace.cpu, trace.mem, round(LIMIT_BLOCK_S / trace.step_s))
    policy = POLICIES[name](float(trace.cap_cores[0]), float(trace.cap_bytes[0]), trace.step_s)
    return replay(policy, trace)


@dataclass
class VMResult:
    vm: int
    tallies: dict[str, dict[str, Tally]]
    mean_cpu: float
    window: dict[str, FloatArray] = field(default_factory=dict)  # the plotted stretch
    #: (time, vm, cores, bytes) of each allocation our policy set, for the placement replay
    changes: list[tuple[float, int, float, float]] = field(default_factory=list)
    provisioned: tuple[float, float] = (0.0, 0.0)


def run_vm(job: tuple[list[Path], int, float | None, list[str], float]) -> VMResult:
    """Every policy over one VM."""
    files, vm, days, names, plot_days = job
    trace = load_vm(files, vm, days)
    scored_from = trace.t[0] + WARMUP_S if len(trace.t) else math.inf
    tallies: dict[str, dict[str, Tally]] = {}
    start = _window_start(trace, plot_days)
    in_window = (trace.t >= start) & (trace.t < start + plot_days * DAY_S)
    window = {"t": trace.t[in_window], "cpu": trace.cpu[in_window],
              "memory": trace.mem[in_window]}
    changes: list[tuple[float, int, float, float]] = []
    for name in names:
        cores, mem = allocations(name, trace) if len(trace.t) else (np.empty(0), np.empty(0))
        tallies[name] = {"cpu": score(trace.t, trace.cpu, cores, scored_from),
                         "memory": score(trace.t, trace.mem, mem, scored_from)}
        window[f"{name}/cpu"], window[f"{name}/memory"] = cores[in_window], mem[in_window]
        if name == OURS and len(trace.t):
            moved = np.flatnonzero(np.r_[True, (cores[1:] != cores[:-1]) | (mem[1:] != mem[:-1])])
            changes = [(float(trace.t[i]), vm, float(cores[i]), float(mem[i])) for i in moved]
    provisioned = (float(trace.cap_cores[0]), float(trace.cap_bytes[0])) if len(trace.t) \
        else (0.0, 0.0)
    return VMResult(vm, tallies, float(trace.cpu.mean()) if len(trace.t) else 0.0, window,
                    changes, provisioned)


def _window_start(trace: VMTrace, plot_days: float) -> float:
    """The plotted stretch: a week after the warm-up when the trace is that long (the memory
    peaks of VPA then span their full 8 days), else right after the warm-up."""
    if not len(trace.t):
        return 0.0
    late = trace.t[0] + WARMUP_S + 7 * DAY_S
    return late if late + plot_days * DAY_S <= trace.t[-1] else trace.t[0] + WARMUP_S


def build_report(totals: dict[str, dict[str, Tally]], ours: str | None,
                 overcommitted_targets: int) -> dict[str, Any]:
    """The JSON report; ``ours`` is the name of our policy in ``totals`` (None when skipped)."""
    def r(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 6)

    policies = {name: {res: {"slack": r(t.slack), "shortfall": r(t.shortfall),
                             "changes_per_vm_day": r(t.changes_per_vm_day)}
                       for res, t in per_res.items()}
                for name, per_res in totals.items()}
    return {"ours": ours, "vpa": VPA, "limit": LIMIT, "policies": policies,
            "overcommitted_targets": overcommitted_targets}


def gap_closed(report: dict[str, Any], resource: str = "memory") -> float | None:
    """(vpa slack - ours slack) / (vpa slack - limit slack): 0 at VPA, 1 at the limit."""
    policies = report["policies"]
    if report["ours"] is None or report["ours"] not in policies:
        return None
    vpa, limit = (policies[report[k]][resource]["slack"] for k in ("vpa", "limit"))
    ours = policies[report["ours"]][resource]["slack"]
    if None in (vpa, limit, ours) or vpa == limit:
        return None
    return float((vpa - ours) / (vpa - limit))


def format_table(report: dict[str, Any]) -> str:
    def pct(x: float | None, digits: int) -> str:
        return "n/a" if x is None else f"{100 * x:.{digits}f} %"

    width = 9 + 12 + 16
    lines = [" " * 10 + "".join(f"  {' ' + res + ' ':-^{width}}" for res in RESOURCES),
             f"{'policy':<10}" + f"  {'slack':>9}{'shortfall':>12}{'changes/VM-day':>16}" * 2]
    for name, per_res in report["policies"].items():
        cells = ""
        for res in RESOURCES:
            v = per_res[res]
            changes = v["changes_per_vm_day"]
            cells += (f"  {pct(v['slack'], 1):>9}{pct(v['shortfall'], 2):>12}"
                      f"{'n/a' if changes is None else f'{changes:.2f}':>16}")
        lines.append(f"{name:<10}{cells}")
    gap = gap_closed(report)
    lines.append("memory gap closed (vpa -> limit): "
                 + ("n/a (no 'ours' policy)" if gap is None else f"{100 * gap:.1f} %"))
    placement = report.get("placement")
    if placement:
        lines.append(f"placement replay (hosts at {placement['host_capacity_share']:g} x "
                     f"provisioned): {placement['changes']} changes, {placement['migrations']} "
                     f"migrations, {placement['capped']} capped, "
                     f"{report['overcommitted_targets']} overcommitted targets")
    return "\n".join(lines)


STYLE = {STATIC: ("0.45", "--"), VPA: ("tab:blue", "-"), REACTIVE: ("tab:orange", "-"),
         LIMIT: ("tab:green", "-"), OURS: ("tab:red", "-")}


def plot(results: Sequence[VMResult], names: Sequence[str], path: Path, n_vms: int = 3) -> None:
    """Allocation against use for the ``n_vms`` VMs with the highest mean CPU use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    chosen = sorted(results, key=lambda r: -r.mean_cpu)[:n_vms]
    fig, axes = plt.subplots(len(chosen), 2, figsize=(15, 3.4 * len(chosen) + 0.8),
                             squeeze=False)
    units = {"cpu": ("CPU", "cores", 1.0), "memory": ("memory", "GiB", GIB)}
    for row, result in zip(axes, chosen, strict=False):
        w = result.window
        when = w["t"].astype("datetime64[s]")
        for ax, res in zip(row, RESOURCES, strict=True):
            label, unit, scale = units[res]
            shown = [w[res] / scale]
            provisioned = ""
            for name in names:
                color, dash = STYLE.get(name, ("tab:purple", "-"))
                alloc = w[f"{name}/{res}"] / scale
                if name == STATIC and len(alloc):
                    provisioned = f" (provisioned: {alloc.max():.2f} {unit})"
                else:
                    shown.append(alloc)
                ax.step(when, alloc, where="post", color=color, linestyle=dash, linewidth=1.3,
                        label=name)
            ax.plot(when, w[res] / scale, color="black", linewidth=0.6, label="used")
            top = max((float(a.max()) for a in shown if len(a)), default=1.0)
            ax.set_ylim(0, 1.15 * top or 1.0)
            ax.set_title(f"VM {result.vm}: {label} allocated vs used{provisioned}")
            ax.set_ylabel(f"{label} ({unit})")
            ax.set_xlabel("time (UTC, 2013)")
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %H:%M"))
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False,
               bbox_to_anchor=(0.5, 0.965))
    fig.suptitle("Allocation per policy (step lines) against actual use (thin black line), "
                 f"Bitbrains Rnd, the {len(chosen)} busiest VMs; static may be off the top")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--vms", type=int, default=None, help="only the first N VMs")
    parser.add_argument("--days", type=float, default=None,
                        help="only the first D days of each VM")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    parser.add_argument("--plot-days", type=float, default=3.0,
                        help="days of each plotted VM to show")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--host-capacity-share", type=float, default=0.5,
                        help="each host's capacity as a share of its VMs' provisioned sizes "
                        "(placement replay)")
    args = parser.parse_args(argv)
    names = [n for n in ORDER if n != OURS or ours_available()]
    files = bitbrains_files(args.data, args.vms)
    jobs = [(paths, vm, args.days, names, args.plot_days) for vm, paths in files.items()]
    started = time.perf_counter()
    totals = {name: {res: Tally() for res in RESOURCES} for name in names}
    results: list[VMResult] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for i, result in enumerate(pool.map(run_vm, jobs), start=1):
            for name, per_res in result.tallies.items():
                for res, tally in per_res.items():
                    totals[name][res].merge(tally)
            results.append(result)
            print(f"[{i}/{len(jobs)}] VMs done ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr)
    placed = replay_placement([c for r in results for c in r.changes],
                              {r.vm: r.provisioned for r in results},
                              capacity_share=args.host_capacity_share)
    report = build_report(totals, OURS if OURS in names else None,
                          placed.overcommitted_targets)
    report["placement"] = {"host_capacity_share": args.host_capacity_share,
                           "changes": placed.changes, "migrations": placed.migrations,
                           "capped": placed.capped}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(results, names, args.plot)
    print(format_table(report))
    print(f"wrote {args.out} and {args.plot} ({time.perf_counter() - started:.1f} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
