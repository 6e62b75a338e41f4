"""The worker's per-batch code without Kafka: how fast can one process learn at all?

Feeds the tiled fleet of :mod:`bench.throughput` (the Bitbrains traces over ``--vms`` VMs)
through :class:`agents.processor.MetricsProcessor` in batches of ``--batch`` messages, exactly
as the agent does (decode and validate, every learner, records encoded, one signed state per
VM per batch), with no broker. This is the ceiling of the streaming pipeline on this machine;
``--profile`` prints where the time goes (cProfile, top 25 by own time) and each stage's
share of it (decode, features, detection, forecasting, scaling, new VM states, state
encoding, other), also written to ``--out``.

Usage::

    python bench/offline.py [--events 50000] [--vms 1000] [--batch 500] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from agents.metrics_agent import pipeline_config  # noqa: E402
from agents.processor import Inbound, MetricsProcessor  # noqa: E402
from agents.state_layout import state_codec  # noqa: E402
from bench.throughput import Fleet  # noqa: E402
from streams.observability import WorkerMetrics  # noqa: E402
from streams.runtime import tune_gc  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.traces import DEFAULT_BITBRAINS_DIR  # noqa: E402


def messages(data: Path, vms: int, n: int, step_s: float = 10.0) -> list[Inbound]:
    fleet = Fleet(data, vms, step_s)
    out = []
    for offset in range(n):
        m = next(fleet)
        out.append(Inbound(m["vm_id"].encode(), orjson.dumps(m), "vm.metrics", 0, offset))
    return out


def run(batch: list[Inbound], size: int) -> MetricsProcessor:
    """The batches through one processor configured as the worker is (the wall clock paces
    its state flushes, and the collector is tuned, as in the worker)."""
    tune_gc()
    settings = Settings.from_env()
    proc = MetricsProcessor(pipeline_config(settings), state_codec(b"bench"), lambda _: None,
                            WorkerMetrics(registry=None), max_future_skew_s=1e12,
                            state_flush_s=settings.state_flush_s)
    for i in range(0, len(batch), size):
        proc.process(batch[i:i + size], time.time())
    return proc


def state_cost(proc: MetricsProcessor) -> tuple[float, float]:
    """Mean time (us) to encode one VM state as the worker writes it (encoded, compressed,
    signed) and mean encoded size (bytes), over every VM the run learned."""
    states = list(proc.cache.values())
    started = time.perf_counter()
    sizes = [len(proc.codec.dumps(state, subject=key)) for key, state in proc.cache.items()]
    elapsed = time.perf_counter() - started
    return 1e6 * elapsed / len(states), sum(sizes) / len(sizes)


#: The stages of the per-event work, each the cumulative time of the function(s) named
#: (file suffix, function name); "other" is the rest of the processor's time (records
#: encoded, bookkeeping, metrics).
STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "decode and validate": (("schemas/validate.py", "decode_metric"),),
    "features": (("streams/features.py", "update"),),
    "detection": (("agents/pipeline.py", "_detect"), ("agents/anomaly/pool.py", "step")),
    "forecasting": (("agents/pipeline.py", "_forecast"),
                    ("agents/stepper.py", "_learn_forecasts")),
    "scaling": (("agents/scaling/recommender.py", "recommend"),
                ("agents/pipeline.py", "_report_to_host")),
    "new VM states": (("agents/pipeline.py", "new_state"),),
    "state encoding": (("streams/state_codec.py", "dumps"),),
}


def stage_shares(stats: pstats.Stats) -> dict[str, float]:
    """Each stage's share of the processor's profiled time (cProfile's overhead weighs on
    every Python call, so these are proportions, not timings)."""
    table = stats.stats  # type: ignore[attr-defined]
    cumulative = {(file, name): ct for (file, _, name), (_, _, _, ct, _) in table.items()}

    def time_of(file_suffix: str, name: str) -> float:
        return sum(ct for (file, fn), ct in cumulative.items()
                   if fn == name and file.endswith(file_suffix))

    total = time_of("agents/processor.py", "process")
    if total <= 0:
        return {}
    shares = {stage: sum(time_of(f, n) for f, n in funcs) / total
              for stage, funcs in STAGES.items()}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return {k: round(v, 3) for k, v in shares.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--vms", type=int, default=1_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--step-s", type=float, default=10.0,
                   help="event time between a VM's samples (the Bitbrains traces: 300)")
    p.add_argument("--data", type=Path, default=DEFAULT_BITBRAINS_DIR)
    p.add_argument("--profile", action="store_true", help="print a cProfile summary")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"--data {args.data} is not a folder (see ../shared/data/README.md)")
    batch = messages(args.data, args.vms, args.events, args.step_s)
    started = time.perf_counter()
    shares: dict[str, float] = {}
    if args.profile:
        prof = cProfile.Profile()
        proc = prof.runcall(run, batch, args.batch)
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(25)
        shares = stage_shares(stats)
        print("share of the profiled time by stage: " + ", ".join(
            f"{name} {100 * share:.0f} %" for name, share in shares.items()))
    else:
        proc = run(batch, args.batch)
    elapsed = time.perf_counter() - started
    encode_us, state_bytes = state_cost(proc)
    result = {"events": args.events, "vms": args.vms, "batch": args.batch,
              "events_per_s": args.events / elapsed, "elapsed_s": elapsed,
              "state_encode_us": encode_us, "state_bytes": state_bytes,
              "command": "python bench/offline.py " + " ".join(argv or sys.argv[1:])}
    if shares:
        result["profiled_share_by_stage"] = shares
    print(f"{result['events_per_s']:,.0f} events/s offline ({args.events:,} events, "
          f"{args.vms:,} VMs, batches of {args.batch}{', profiled' if args.profile else ''}); "
          f"one VM's state: {state_bytes:,.0f} bytes written, {encode_us:,.0f} us to encode")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
