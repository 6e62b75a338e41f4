"""Memory of one worker as its fleet grows, on the real local broker.

One ``novacron worker`` is given ``--samples`` samples of each of the first ``--vms`` VMs
(default 10,000), then as many of each of the new VMs up to the second count (default
50,000). After each phase, once every event is processed and every VM's state is in the
``vm-state`` table (the worker writes states every ``--flush-s``), it reads the worker's
resident memory (``VmRSS`` of ``/proc/<pid>/status``) and the table's changelog. It writes
``bench/results/memory.json``::

    {"rss_bytes_per_vm": (rss2 - rss1) / (vms2 - vms1),   # the slope: what a VM costs
     "stored_bytes_per_vm": mean size of a VM's latest signed state in the table,
     "phases": [{"vms": ..., "rss_bytes": ..., "stored_vms": ..., ...}, ...], ...}

Usage::

    python bench/memory.py [--vms 10000,50000] [--samples 12] [--data ../shared/data/bitbrains_rnd]

Targets (issue 17): rss_bytes_per_vm <= 32,768 and stored_bytes_per_vm <= 16,384.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from bench.throughput import (  # noqa: E402
    Fleet,
    bench_broker,
    preload,
    start_worker,
    write_result,
)
from streams.admin import ensure_topics  # noqa: E402
from streams.broker import free_port  # noqa: E402
from streams.runner import stop_process, worker_counters  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.traces import DEFAULT_BITBRAINS_DIR  # noqa: E402


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def stored_states(settings: Settings) -> dict[bytes, int]:
    """Each key's latest value size in the ``vm-state`` table's changelog (deletions
    dropped)."""
    topic = f"{settings.app_id}-vm-state-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False, max_partition_fetch_bytes=8 << 20,
                                **settings.kafka_client_options())
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        sizes: dict[bytes, int] = {}
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    if r.value is None:
                        sizes.pop(r.key, None)
                    else:
                        sizes[r.key] = len(r.value)
        return sizes
    finally:
        await consumer.stop()


def settle(settings: Settings, events: int, vms: int, flush_s: float, timeout_s: float
           ) -> dict[str, Any]:
    """Wait until ``events`` are read and ``vms`` states stored; what it took."""
    started = time.perf_counter()
    done, last_print = 0.0, started
    while done < events:  # read: processed or dead-lettered (a few trace rows are invalid)
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"only {done:,.0f} of {events:,} events read in "
                             f"{timeout_s:.0f} s")
        time.sleep(1.0)
        # messages read (only vm.metrics is fed here), added up over topics
        done = max(done, worker_counters(settings.web_port).get("novacron_events_in_total", 0))
        if time.perf_counter() - last_print >= 15:
            last_print = time.perf_counter()
            print(f"  read {done:,.0f}/{events:,}", flush=True)
    processing_s = time.perf_counter() - started
    # Every VM's state is written within a flush interval or two; a VM whose every sample
    # was dead-lettered (a few trace rows are invalid) has none, so wait for the count to
    # settle rather than for exactly ``vms``.
    count = -1
    while len(sizes := asyncio.run(stored_states(settings))) != count or count < 0.9 * vms:
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"only {len(sizes):,} of {vms:,} states stored in time")
        count = len(sizes)
        time.sleep(max(5.0, 2 * flush_s))
    return {"processing_s": processing_s, "sizes": sizes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vms", default="10000,50000", help="fleet sizes measured, in order")
    p.add_argument("--samples", type=int, default=12, help="samples of each VM")
    p.add_argument("--step-s", type=float, default=10.0, help="event time between samples")
    p.add_argument("--flush-s", type=float, default=10.0,
                   help="NOVACRON_STATE_FLUSH_S of the worker (how soon states are stored)")
    p.add_argument("--timeout-s", type=float, default=7200.0, help="per phase")
    p.add_argument("--data", type=Path, default=DEFAULT_BITBRAINS_DIR)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "memory.json")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"--data {args.data} is not a folder (see ../shared/data/README.md)")
    try:
        sizes = [int(v) for v in args.vms.split(",")]
    except ValueError:
        p.error(f"--vms must be two whole numbers separated by a comma, got {args.vms!r}")
    if len(sizes) != 2 or not 0 < sizes[0] < sizes[1] or args.samples < 1:
        p.error("--vms needs two increasing positive counts, --samples a positive count")

    tmp = Path(tempfile.mkdtemp(prefix="memory-"))
    with bench_broker(tmp) as base:
        settings = dataclasses.replace(
            base, topic_prefix=f"mem{os.getpid()}.", app_id=f"novacron-mem-{os.getpid()}",
            data_dir=str(tmp / "worker"), web_port=free_port(), checkpoint_interval_s=0.0,
            state_flush_s=args.flush_s, log_level="warning")
        asyncio.run(ensure_topics(settings))
        worker = start_worker(settings, tmp / "worker.log")
        phases = []
        try:
            held, produced = 0, 0
            for vms in sizes:
                new = vms - held
                print(f"{vms:,} VMs: producing {args.samples} samples of {new:,} new VMs",
                      flush=True)
                fleet = Fleet(args.data, new, args.step_s, first_id=held)
                asyncio.run(preload(settings, fleet, new * args.samples))
                produced += new * args.samples
                seen = settle(settings, produced, vms, args.flush_s, args.timeout_s)
                stored = list(seen["sizes"].values())
                phase = {"vms": vms, "events": produced, "rss_bytes": rss_bytes(worker.pid),
                         "stored_vms": len(stored),
                         "stored_bytes_mean": sum(stored) / len(stored),
                         "processing_s": round(seen["processing_s"], 1)}
                phases.append(phase)
                print(f"  RSS {phase['rss_bytes'] / 2**20:,.0f} MiB, {len(stored):,} states "
                      f"stored, {phase['stored_bytes_mean']:,.0f} bytes each", flush=True)
                held = vms
        finally:
            stop_process(worker)
        a, b = phases
        result = {
            "rss_bytes_per_vm": (b["rss_bytes"] - a["rss_bytes"]) / (b["vms"] - a["vms"]),
            "stored_bytes_per_vm": b["stored_bytes_mean"],
            "phases": phases,
            "targets": {"rss_bytes_per_vm": 32_768, "stored_bytes_per_vm": 16_384},
        }
        write_result(args.out, result, "memory.py", argv, args)
        print(f"{result['rss_bytes_per_vm']:,.0f} bytes of RSS per VM, "
              f"{result['stored_bytes_per_vm']:,.0f} stored; written {args.out}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
