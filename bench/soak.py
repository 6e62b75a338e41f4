"""Soak: one worker driven at a fixed rate from real traces; does its memory stay flat?

A local Kafka broker (or ``KAFKA_BOOTSTRAP_SERVERS``) and one ``novacron worker`` process.
The Bitbrains VMs are replayed as a larger fleet: each trace VM appears ``--copies`` times
(``vm-001-c03-g0``), in trace-time order, looping over the traces with time shifted forward so
event time keeps advancing. Every ``--churn-every-s`` seconds, ``--churn`` of the copies get a
new generation (``-g1``: a new VM), so the old ones fall silent and must expire after
``NOVACRON_IDLE_VM_EXPIRY_S`` (``--expiry-s``) for memory to stay flat.

Every ``--sample-s`` seconds it records the worker's RSS (``/proc/<pid>/status``), the VMs it
holds in memory, expired and processed counts, consumer lag and the size of its table store
on disk. Growth is measured after ``--warmup-min``: the median RSS of the last tenth of the
run against the median of the first tenth after warm-up.

Usage::

    python bench/soak.py --minutes 30 --rate 2000 [--data ../shared/data/bitbrains_rnd]
                         [--copies 16] [--out bench/results/soak.json]

Target (issue 6): RSS growth < 5 % over 30 minutes at 2,000 events/s once warmed up.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from bench.throughput import bench_broker  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.broker import free_port  # noqa: E402
from streams.runner import spawn_worker, stop_process  # noqa: E402
from streams.runner import worker_counters as counters  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.traces import DEFAULT_BITBRAINS_DIR, read_fleet  # noqa: E402


def fleet(data: Path, copies: int, generation: list[int]) -> Iterator[dict[str, Any]]:
    """The traces as ``copies`` VMs each, forever, time shifted forward on every loop;
    ``generation[i]`` (changed by the caller) names copy ``i``'s current VM."""
    first = last = None
    shift = 0.0
    while True:
        for m in read_fleet(data):
            ts = m["timestamp"]
            first = ts if first is None else first
            last = ts if last is None else max(last, ts)
            for c in range(copies):
                g = generation[c]
                yield {**m, "vm_id": f"{m['vm_id']}-c{c:02d}-g{g}",
                       "host_id": f"{m['host_id']}-c{c:02d}", "timestamp": ts + shift}
        assert first is not None and last is not None
        shift += last - first + 300.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def drive(settings: Settings, args: argparse.Namespace, worker: subprocess.Popen[bytes],
                data_dir: Path) -> dict[str, Any]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5,
                                max_batch_size=256 * 1024, acks=1,
                                **settings.kafka_client_options())
    await producer.start()
    generation = [0] * args.copies
    events = fleet(args.data, args.copies, generation)
    topic = settings.topic("vm.metrics")
    samples: list[dict[str, Any]] = []
    start = time.monotonic()
    end = start + args.minutes * 60.0
    next_sample = start
    next_churn = start + args.churn_every_s
    sent = 0
    churned = 0
    try:
        while (now := time.monotonic()) < end:
            due = int((now - start) * args.rate) - sent
            for _ in range(min(due, 5000)):
                m = next(events)
                await producer.send(topic, key=m["vm_id"].encode(), value=orjson.dumps(m))
                sent += 1
            if now >= next_churn:
                n = max(1, round(args.churn * args.copies))
                for i in range(n):  # rotating: each churn renames the next copies
                    generation[(churned + i) % args.copies] += 1
                churned += n
                next_churn += args.churn_every_s
            if now >= next_sample:
                c = counters(settings.web_port)
                samples.append({
                    "t_s": round(now - start, 1), "sent": sent,
                    "rss_bytes": rss_bytes(worker.pid),
                    "processed": c.get("novacron_events_processed_total", 0.0),
                    "cached_vms": c.get("novacron_cached_vms", 0.0),
                    "vms_expired": c.get("novacron_vms_expired_total", 0.0),
                    "lag_messages": c.get("novacron_consumer_lag_messages", 0.0),
                    "store_bytes": dir_bytes(data_dir)})
                s = samples[-1]
                print(f"{s['t_s']:>7.0f} s  sent {sent:>10,}  processed {s['processed']:>10,.0f}"
                      f"  lag {s['lag_messages']:>8,.0f}  rss {s['rss_bytes'] / 2**20:>7.1f} MiB"
                      f"  vms {s['cached_vms']:>5.0f}  expired {s['vms_expired']:>5.0f}",
                      flush=True)
                next_sample += args.sample_s
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return {"sent": sent, "samples": samples, "elapsed_s": time.monotonic() - start}


def summarize(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    samples = run["samples"]
    after = [s for s in samples if s["t_s"] >= args.warmup_min * 60.0]
    tenth = max(1, len(after) // 10)
    head, tail = after[:tenth], after[-tenth:]
    rss0 = statistics.median(s["rss_bytes"] for s in head) if head else float("nan")
    rss1 = statistics.median(s["rss_bytes"] for s in tail) if tail else float("nan")
    span = (tail[-1]["t_s"] - head[0]["t_s"]) if after else 0.0
    processed = (tail[-1]["processed"] - head[0]["processed"]) if after else 0.0
    return {
        "rss_after_warmup_bytes": rss0,
        "rss_end_bytes": rss1,
        "rss_growth": (rss1 - rss0) / rss0 if rss0 else float("nan"),
        "target_rss_growth": 0.05,
        "offered_rate_per_s": run["sent"] / run["elapsed_s"],
        "processed_rate_per_s_after_warmup": processed / span if span else float("nan"),
        "final_lag_messages": samples[-1]["lag_messages"] if samples else float("nan"),
        "vms_held_end": samples[-1]["cached_vms"] if samples else float("nan"),
        "vms_expired_total": samples[-1]["vms_expired"] if samples else float("nan"),
        "store_bytes_end": samples[-1]["store_bytes"] if samples else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=2000.0, help="events per second offered")
    p.add_argument("--data", type=Path, default=DEFAULT_BITBRAINS_DIR)
    p.add_argument("--copies", type=int, default=16, help="VMs per trace VM")
    p.add_argument("--churn", type=float, default=0.25,
                   help="share of the copies renamed (new VMs) at each churn")
    p.add_argument("--churn-every-s", type=float, default=300.0)
    p.add_argument("--expiry-s", type=float, default=300.0,
                   help="NOVACRON_IDLE_VM_EXPIRY_S of the worker")
    p.add_argument("--warmup-min", type=float, default=5.0)
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"--data {args.data} is not a folder (see ../shared/data/README.md)")
    if args.minutes <= args.warmup_min:
        p.error("--minutes must be longer than --warmup-min")

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    with bench_broker(tmp) as base:
        return _soak(args, argv, base, tmp)


def _soak(args: argparse.Namespace, argv: list[str] | None, base: Settings, tmp: Path) -> int:
    worker = None
    try:
        settings = dataclasses.replace(
            base, topic_prefix=f"soak{os.getpid()}.",
            app_id=f"novacron-soak-{os.getpid()}", data_dir=str(tmp / "worker"),
            web_port=free_port(), partitions=4, idle_vm_expiry_s=args.expiry_s,
            checkpoint_interval_s=0.0, log_level="warning")
        asyncio.run(ensure_topics(settings))
        log = open(tmp / "worker.log", "wb")  # noqa: SIM115 - the worker's, for its life
        worker = spawn_worker(settings, log)
        deadline = time.monotonic() + 120
        while not counters(settings.web_port) and time.monotonic() < deadline:
            time.sleep(1)
        print(f"worker up (log {tmp / 'worker.log'}); {args.minutes:g} min at "
              f"{args.rate:g} events/s, {args.copies} copies of each trace VM", flush=True)
        run = asyncio.run(drive(settings, args, worker, Path(settings.data_dir)))
        result = {"command": "python bench/soak.py " + " ".join(argv or sys.argv[1:]),
                  "params": {k: str(v) if isinstance(v, Path) else v
                             for k, v in vars(args).items()},
                  "summary": summarize(run, args), "samples": run["samples"]}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        s = result["summary"]
        print(f"RSS {s['rss_after_warmup_bytes'] / 2**20:.1f} -> "
              f"{s['rss_end_bytes'] / 2**20:.1f} MiB ({100 * s['rss_growth']:+.1f} %, target "
              f"< 5 %); offered {s['offered_rate_per_s']:.0f}/s, processed "
              f"{s['processed_rate_per_s_after_warmup']:.0f}/s; written {args.out}")
        return 0
    finally:
        if worker is not None:
            stop_process(worker)


if __name__ == "__main__":
    sys.exit(main())
