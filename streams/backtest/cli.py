"""``novacron backtest``: find the files, run them through the pipeline in parallel with a
progress bar, write ``metrics.json``, the plots and ``report.md``.

Each NAB-format series is one job and each Bitbrains fleet one job (its VMs share hosts, so
they run together), spread over ``--jobs`` processes.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shlex
import sys
import time
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import Manager
from pathlib import Path
from typing import Any

from agents.pipeline import PipelineConfig
from streams.backtest.engine import FleetSettings, SeriesResult, run_fleet, run_series
from streams.backtest.sources import Fleet, SeriesFile, Sources, discover
from streams.replay import Progress
from streams.runtime import tune_gc
from streams.settings import Settings
from streams.traces import TraceError, count_rows

#: What the pipeline's behaviour depends on, shown in the report.
REPORTED_SETTINGS = ("alert_threshold", "resolve_after_events", "tumbling_window_s",
                     "sliding_window_s", "forecast_horizons_s", "forecast_interval_s",
                     "cpu_quantile", "cpu_margin", "memory_margin", "sizing_window_s",
                     "stabilization_s", "cooldown_s", "host_cpu_cores", "host_memory_bytes")


def _total_rows(sources: Sources, limit: int | None) -> int:
    series = {i: [s.path] for i, s in enumerate(sources.series)}  # one "VM" per series
    return count_rows(series, limit) + sum(count_rows(f.files, limit) for f in sources.fleets)


def _series_job(series: SeriesFile, cfg: PipelineConfig, limit: int | None,
                progress: Any) -> tuple[list[SeriesResult], Counter[str]]:
    return [run_series(series, cfg, limit, progress.put)], Counter()


def _fleet_job(fleet: Fleet, cfg: PipelineConfig, hosts: FleetSettings, limit: int | None,
               progress: Any) -> tuple[list[SeriesResult], Counter[str]]:
    return run_fleet(fleet, cfg, hosts, limit, progress.put)


def _call(fn: Any, args: tuple[Any, ...], channel: Any
          ) -> tuple[list[SeriesResult], Counter[str]]:
    tune_gc()  # in each job's process, as in the worker
    result: tuple[list[SeriesResult], Counter[str]] = fn(*args, channel)
    return result


class _Inline:
    """The progress channel when everything runs in this process."""

    def __init__(self, bar: Progress | None) -> None:
        self.bar, self.done = bar, 0

    def put(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.done, None)


def _run_jobs(sources: Sources, cfg: PipelineConfig, hosts: FleetSettings, limit: int | None,
              jobs: int, bar: Progress | None) -> tuple[list[SeriesResult], Counter[str]]:
    work: list[tuple[Any, tuple[Any, ...]]] = (
        [(_fleet_job, (f, cfg, hosts, limit)) for f in sources.fleets]
        + [(_series_job, (s, cfg, limit)) for s in sources.series])
    results: list[SeriesResult] = []
    refused: Counter[str] = Counter()
    if jobs <= 1 or len(work) == 1:
        tune_gc()
        inline = _Inline(bar)
        for fn, args in work:
            out, bad = fn(*args, inline)
            results += out
            refused.update(bad)
        return results, refused
    done = 0
    with Manager() as manager, ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
        channel = manager.Queue()
        futures: list[Future[tuple[list[SeriesResult], Counter[str]]]] = [
            pool.submit(_call, fn, args, channel) for fn, args in work]
        pending = set(futures)
        while pending:
            try:
                done += channel.get(timeout=0.5)
                if bar is not None:
                    bar.update(done, None)
            except queue.Empty:
                pass
            pending = {f for f in pending if not f.done()}
        for f in futures:  # in submission order: the report's order does not depend on timing
            out, bad = f.result()
            results += out
            refused.update(bad)
    return results, refused


def _plots(results: list[SeriesResult], out: Path, max_per_kind: int
           ) -> dict[str, list[tuple[str, str]]]:
    from streams.backtest import plots
    from streams.backtest.report import window_hits

    made: dict[str, list[tuple[str, str]]] = {"incidents": [], "forecast": [], "scaling": []}
    # The most eventful first: what an operator looks at.
    ranked = sorted(results, key=lambda r: (-(len(r.incidents) + len(r.windows)), r.name))
    for r in ranked[:max_per_kind]:
        if not r.rows:
            continue
        hit, false = window_hits(r)
        what = (f"{len(r.incidents)} incidents" + (f"; {hit}/{len(r.windows)} labelled windows "
                                                   f"detected, {false} false positives"
                                                   if r.labelled else ""))
        rel = f"plots/incidents_{r.name}.png"
        plots.plot_incidents(r, out / rel, f"{r.name} ({r.metric}): {what}")
        made["incidents"].append((f"{r.name}: {what}", rel))
    for r in sorted(results, key=lambda r: r.name)[:max_per_kind]:
        tally = min(r.accuracy.get(r.metric, {}).items(), default=None)
        if tally is None:
            continue
        h, t = tally
        title = (f"{r.name} {r.metric}: forecast {h / 60:g} min ahead, WAPE {t.wape:.3f}, "
                 f"{100 * t.coverage_90:.0f} % of actuals inside the 90 % interval")
        rel = f"plots/forecast_{r.name}.png"
        if plots.plot_forecast(r, out / rel, title) is not None:
            made["forecast"].append((title, rel))
    for r in [r for r in results if r.kind == "vm"][:max_per_kind]:
        title = f"{r.name}: {len(r.recommendations)} recommendations"
        rel = f"plots/scaling_{r.name}.png"
        plots.plot_allocation(r, out / rel, title)
        made["scaling"].append((title, rel))
    return made


def run_backtest(settings: Settings, args: argparse.Namespace) -> int:
    """The whole command; returns the exit code."""
    from agents.metrics_agent import pipeline_config
    from streams.backtest import markdown, report

    started = time.perf_counter()
    sources = discover(args.paths, args.labels)
    if not sources.series and not sources.fleets:
        why = "; ".join(f"{p}: {w}" for p, w in list(sources.skipped.items())[:3])
        raise TraceError("no NAB-format (timestamp,value) or Bitbrains-format files under "
                         + ", ".join(str(p) for p in args.paths) + (f" ({why})" if why else ""))
    cfg = pipeline_config(settings)
    hosts = FleetSettings(settings.host_cpu_cores, settings.host_memory_bytes,
                          settings.host_report_ttl_s, settings.max_message_bytes)
    bar = None
    if not args.no_progress:
        bar = Progress(_total_rows(sources, args.limit), label="backtest")
    jobs = args.jobs or os.cpu_count() or 1
    results, refused = _run_jobs(sources, cfg, hosts, args.limit, jobs, bar)
    if bar is not None:
        bar.update(sum(r.rows for r in results) + sum(refused.values()), None, final=True)
    seconds = time.perf_counter() - started
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    command = "novacron " + shlex.join(args.argv)
    reported = {name: getattr(settings, name) for name in REPORTED_SETTINGS}
    metrics = report.build_metrics(
        results, refused=refused, skipped=sources.skipped,
        label_files=[os.path.relpath(p) for p in sources.label_files], seconds=seconds,
        command=command,
        settings={k: list(v) if isinstance(v, tuple) else v for k, v in reported.items()})
    if not args.no_progress:
        print("writing plots", file=sys.stderr)
    made = _plots(results, out, args.plots)
    metrics["plots"] = {kind: [rel for _, rel in items] for kind, items in made.items()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str) + "\n")
    (out / "report.md").write_text(markdown.render(metrics, made))
    nab = metrics["nab"]
    score = (f", NAB standard score {nab['profiles']['standard']['score']}"
             if nab is not None else "")
    print(f"{metrics['events']:,} samples in {seconds:.0f} s: {metrics['incidents']['total']:,} "
          f"incidents{score}; report {out / 'report.md'}")
    return 0

