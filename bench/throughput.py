"""Throughput and latency of one worker against the machine's limit, on the real local broker.

One run, five measurements (issues 7 and 17):

1. **Preload** ``--events`` metric messages from ``--vms`` VMs into ``vm.metrics``: the
   Bitbrains traces tiled over the fleet, VM ``i`` replaying trace ``i mod T`` from its own
   row offset, in rounds (every VM's next sample, then the next round).
2. **Raw limit**: one aiokafka consumer that only fetches and orjson-decodes that topic.
3. **Pipeline**: one ``novacron worker`` process (every agent and learner on) started on the
   preloaded topic; events per second from its first processed event until the topic is
   drained (or ``--max-pipeline-s`` has passed: the rate is then over the time it had, and
   ``drained`` says false).
4. **Bare Faust**: ``bench/faust_bare.py``, a Faust worker whose one agent takes batches from
   the same topic as the metrics agent does and only decodes them, in its own consumer group;
   ``pipeline_vs_faust`` is the pipeline's rate over its rate.
5. **Latency** at steady offered rates (``--rates``, default 2,500 and 5,000 events/s, then
   half the pipeline's rate), each with its own fresh topics, worker and VMs (a quarter as
   many as the rate, unless ``--latency-vms``): the time from just before an event is
   produced to the moment its first forecast record reaches a consumer, p50 and p99 over
   ``--latency-s`` seconds after ``--warmup-s``. A worker slower than the offered rate falls
   behind and its latency grows for as long as the phase lasts: ``kept_up`` says whether it
   processed what it was offered.

Writes ``bench/results/throughput.json``::

    {"raw_events_per_s": r, "pipeline_events_per_s": p, "ratio": p / r,
     "faust_bare_events_per_s": f, "pipeline_vs_faust": p / f,
     "latency_ms": {"2500": {"p50": a, "p99": b}, "5000": {"p50": c, "p99": d}}, ...}

Usage::

    python bench/throughput.py [--events 1000000] [--vms 10000]
                               [--data ../shared/data/bitbrains_rnd]

Targets (issue 17): >= 5,000 events/s per worker with every learner on and the topic drained,
pipeline_vs_faust >= 0.5, p99 < 250 ms kept up at 5,000 events/s and < 100 ms at 2,500.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from schemas.validate import Rejected, decode_metric  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.broker import LocalKafka, free_port  # noqa: E402
from streams.model_store import partition_for  # noqa: E402
from streams.runner import (  # noqa: E402
    settings_env,
    spawn_worker,
    stop_process,
    wait_ready,
    worker_counters,
)
from streams.settings import Settings  # noqa: E402
from streams.traces import DEFAULT_BITBRAINS_DIR, bitbrains_files, read_vm  # noqa: E402

_STEP_S = 10.0  # event time between a VM's samples: the fleet reports every 10 s
_T0 = 1_700_000_000.0


class Fleet:
    """``vms`` VMs replaying the traces: VM ``i`` is trace ``i mod T`` from its own offset,
    one sample per round, rounds ``step_s`` apart in event time. VM ids count from
    ``first_id`` (a second fleet of new VMs starts where the first ended)."""

    def __init__(self, data: Path, vms: int, step_s: float = _STEP_S,
                 first_id: int = 0) -> None:
        files = bitbrains_files(data)
        self.first_id = first_id
        self.traces = [list(read_vm(paths, n)) for n, paths in files.items()]
        t = len(self.traces)
        self.vms = vms
        # Offsets spread each trace's copies over its length (a prime stride, so copies of one
        # trace are not in step).
        self.offsets = [(n // t) * 7919 % len(self.traces[n % t])
                        for n in range(first_id, first_id + vms)]
        self.step_s = step_s
        self.round = 0
        self.index = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        i, r = self.index, self.round
        trace = self.traces[(self.first_id + i) % len(self.traces)]
        row = trace[(self.offsets[i] + r) % len(trace)]
        self.index += 1
        if self.index == self.vms:
            self.index, self.round = 0, r + 1
        n = self.first_id + i
        return {**row, "vm_id": f"vm-{n:06d}", "host_id": f"host-{n // 8:05d}",
                "timestamp": _T0 + r * self.step_s}


def producer_for(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5,
                            max_batch_size=512 * 1024, acks=1,
                            **settings.kafka_client_options())


async def preload(settings: Settings, fleet: Fleet, n: int) -> float:
    """Produce ``n`` events as fast as the producer goes, in batches built per partition
    (each key to its partition as Kafka's default partitioner puts it); returns events/s."""
    producer = producer_for(settings)
    await producer.start()
    topic = settings.topic("vm.metrics")
    started = time.perf_counter()
    try:
        batches: dict[int, Any] = {}
        sent = []
        for done in range(1, n + 1):
            m = next(fleet)
            key = m["vm_id"].encode()
            part = partition_for(key, settings.partitions)
            batch = batches.get(part)
            if batch is None:
                batch = batches[part] = producer.create_batch()
            value = orjson.dumps(m)
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                sent.append(await producer.send_batch(batch, topic, partition=part))
                batch = batches[part] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            if done % 100_000 == 0:
                await asyncio.gather(*sent)
                sent.clear()
                print(f"  preloaded {done:,}/{n:,}", flush=True)
        for part, batch in batches.items():
            sent.append(await producer.send_batch(batch, topic, partition=part))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return n / (time.perf_counter() - started)


async def raw_limit(settings: Settings, n: int) -> float:
    """One consumer that only fetches and decodes the topic: events/s."""
    topic = settings.topic("vm.metrics")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False, max_partition_fetch_bytes=8 << 20,
                                fetch_max_bytes=64 << 20, **settings.kafka_client_options())
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = 0
        started = time.perf_counter()
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for records in batches.values():
                for rec in records:
                    orjson.loads(rec.value)
            seen += sum(len(r) for r in batches.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """A worker on ``settings``, returned once it is ready (partitions assigned, tables
    recovered), so that no measurement includes its start."""
    log = open(log_path, "wb")  # noqa: SIM115 - the worker's, for its life
    worker = spawn_worker(settings, log)
    try:
        wait_ready(worker, settings.web_port, log_path, timeout_s=180.0)
    except RuntimeError as exc:
        stop_process(worker)
        raise SystemExit(str(exc)) from None
    return worker


def processed(settings: Settings, known: float = 0.0) -> float:
    """The worker's processed-events counter; ``known`` when it does not answer in time (its
    web server shares the event loop with the agents, so a long batch can delay it)."""
    value = worker_counters(settings.web_port).get("novacron_events_processed_total")
    return known if value is None else max(value, known)


def pipeline(settings: Settings, n: int, max_s: float, log_path: Path) -> dict[str, Any]:
    """Start a worker on the preloaded topic; events/s from its first processed event."""
    worker = start_worker(settings, log_path)
    try:
        while (first := processed(settings)) <= 0:
            time.sleep(0.05)
        started = time.perf_counter()
        last_print = started
        done = first
        samples = [(0.0, first)]
        while done < n and time.perf_counter() - started < max_s:
            time.sleep(0.5)
            done = processed(settings, done)
            samples.append((time.perf_counter() - started, done))
            if time.perf_counter() - last_print >= 10:
                last_print = time.perf_counter()
                rate = (done - first) / (last_print - started)
                print(f"  processed {done:,.0f}/{n:,} ({rate:,.0f} events/s)", flush=True)
        elapsed = time.perf_counter() - started
        # The second half of the run: every VM has been seen (its state built) by then.
        t_half, done_half = next(x for x in samples if x[0] >= elapsed / 2)
        return {"events_per_s": (done - first) / elapsed, "processed": done,
                "elapsed_s": elapsed, "drained": done >= n,
                "second_half_events_per_s": (done - done_half) / max(elapsed - t_half, 1e-9)}
    finally:
        stop_process(worker)


def faust_bare(settings: Settings, n: int, max_s: float, tmp: Path) -> dict[str, Any]:
    """``bench/faust_bare.py`` on ``settings``' topic, in a consumer group of its own."""
    out = tmp / "faust_bare.json"
    bare = dataclasses.replace(settings, app_id=settings.app_id + "-bare",
                               data_dir=str(tmp / "bare"))
    with open(tmp / "faust_bare.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "faust_bare.py"), "--events", str(n),
             "--max-s", str(max_s), "--out", str(out)], cwd=REPO,
            env={**os.environ, **settings_env(bare)}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            proc.wait(timeout=max_s + 180)
        finally:
            stop_process(proc)
    if not out.exists():
        raise SystemExit(f"bench/faust_bare.py wrote no result; see {tmp / 'faust_bare.log'}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


async def latency(settings: Settings, fleet: Fleet, rate: float, warmup_s: float,
                  measure_s: float, drain_s: float = 10.0) -> dict[str, Any]:
    """Offer ``rate`` events/s; for each event that makes forecasts, the time from just
    before it is produced to its first forecast record at this consumer.

    Which events make forecasts is known in advance (a VM's second sample, then the first
    one ``forecast_interval_s`` after its last forecast). Those sent after the warm-up whose
    record has not come ``drain_s`` after sending stops are counted at the time waited
    (``censored``): the percentiles are then lower bounds.
    """
    consumer = AIOKafkaConsumer(settings.topic("vm.forecasts"),
                                bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="latest", enable_auto_commit=False,
                                fetch_max_wait_ms=5, **settings.kafka_client_options())
    await consumer.start()
    await consumer.seek_to_end()
    producer = producer_for(settings)
    await producer.start()
    topic = settings.topic("vm.metrics")
    expected: dict[tuple[str, float], float] = {}  # (vm, timestamp) -> when it was sent
    last_forecast: dict[str, float] = {}
    latencies_ms: list[float] = []
    measuring_from = time.time() + warmup_s
    stop_sending = measuring_from + measure_s

    async def receive() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                for rec in records:
                    f = orjson.loads(rec.value)
                    t = expected.pop((f["vm_id"], f["timestamp"]), None)
                    if t is not None and t >= measuring_from:
                        latencies_ms.append(1000.0 * (now - t))

    receiver = asyncio.create_task(receive())
    sent = 0
    processed_before = processed(settings)
    started = time.time()
    try:
        while (now := time.time()) < stop_sending:
            due = int((now - started) * rate) - sent
            for _ in range(min(due, 2000)):
                m = next(fleet)
                vm, ts, value = m["vm_id"], m["timestamp"], orjson.dumps(m)
                if isinstance(decode_metric(value, now=time.time(),
                                            max_bytes=settings.max_message_bytes,
                                            max_future_skew_s=settings.max_future_skew_s),
                              Rejected):
                    pass  # a trace row the worker dead-letters (a VM with no memory, ...)
                elif vm not in last_forecast:
                    last_forecast[vm] = -math.inf  # the first sample gives no step yet
                elif ts - last_forecast[vm] >= settings.forecast_interval_s:
                    last_forecast[vm] = ts
                    expected[(vm, ts)] = time.time()
                await producer.send(topic, key=vm.encode(), value=value)
                sent += 1
            await asyncio.sleep(0.001)
        await producer.flush()
        elapsed = time.time() - started
        done = processed(settings, processed_before) - processed_before
        waited_until = time.time() + drain_s
        while expected and time.time() < waited_until:
            await asyncio.sleep(0.1)
        waited_until = time.time()
    finally:
        receiver.cancel()
        await producer.stop()
        await consumer.stop()
    censored = [1000.0 * (waited_until - t) for t in expected.values() if t >= measuring_from]
    lat = np.asarray(latencies_ms + censored)
    return {"offered_events_per_s": sent / elapsed,
            "processed_events_per_s": done / elapsed,
            "kept_up": done >= 0.98 * sent,
            "measured_events": int(lat.size),
            "censored": len(censored),
            "p50": float(np.percentile(lat, 50)) if lat.size else None,
            "p99": float(np.percentile(lat, 99)) if lat.size else None}


def write_result(out: Path, result: dict[str, Any], script: str, argv: list[str] | None,
                 args: argparse.Namespace) -> None:
    """``result`` with the command that made it and its parameters, as JSON at ``out``."""
    result["command"] = f"python bench/{script} " + " ".join(argv or sys.argv[1:])
    result["params"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


@contextlib.contextmanager
def bench_broker(tmp: Path) -> Iterator[Settings]:
    """The settings of the environment, on the Kafka cluster they name or, when they name
    none, on a local broker started in ``tmp`` (and stopped on the way out)."""
    base = Settings.from_env()
    if base.bootstrap_servers:
        yield base
        return
    kafka = LocalKafka(data_dir=tmp / "kafka", port=free_port()).start()
    try:
        yield dataclasses.replace(base, bootstrap_servers=kafka.bootstrap_servers)
    finally:
        kafka.stop()


def worker_settings(base: Settings, tmp: Path, name: str) -> Settings:
    return dataclasses.replace(
        base, topic_prefix=f"tp{os.getpid()}{name}.", app_id=f"novacron-tp-{os.getpid()}-{name}",
        data_dir=str(tmp / name), web_port=free_port(), checkpoint_interval_s=0.0,
        log_level="warning")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events preloaded")
    p.add_argument("--vms", type=int, default=10_000, help="VMs they come from")
    p.add_argument("--data", type=Path, default=DEFAULT_BITBRAINS_DIR)
    p.add_argument("--max-pipeline-s", type=float, default=900.0,
                   help="stop measuring the pipeline after this long if not drained")
    p.add_argument("--step-s", type=float, default=_STEP_S,
                   help="event time between a VM's samples (the Bitbrains traces: 300)")
    p.add_argument("--rates", default="2500,5000", help="offered rates for latency, events/s")
    p.add_argument("--latency-vms", type=int, default=0,
                   help="VMs of each latency run (fresh topics, worker and VMs); default: a "
                        "quarter of the rate, so that each VM forecasts every 7.5 s")
    p.add_argument("--warmup-s", type=float, default=15.0)
    p.add_argument("--latency-s", type=float, default=60.0,
                   help="measured seconds per rate (a VM forecasts every 30 of its samples)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "throughput.json")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"--data {args.data} is not a folder (see ../shared/data/README.md)")
    if args.events < 1 or args.vms < 1 or args.latency_vms < 0 or args.step_s <= 0:
        p.error("--events, --vms and --step-s must be positive, --latency-vms not negative")
    try:
        rates = [int(r) for r in args.rates.split(",") if r]
    except ValueError:
        p.error(f"--rates must be whole numbers separated by commas, got {args.rates!r}")

    tmp = Path(tempfile.mkdtemp(prefix="throughput-"))
    with bench_broker(tmp) as base:
        fleet = Fleet(args.data, args.vms, args.step_s)
        settings = worker_settings(base, tmp, "pipeline")
        asyncio.run(ensure_topics(settings))
        print(f"preloading {args.events:,} events from {args.vms:,} VMs "
              f"({len(fleet.traces)} traces) into {settings.partitions} partitions", flush=True)
        produce_rate = asyncio.run(preload(settings, fleet, args.events))
        raw = asyncio.run(raw_limit(settings, args.events))
        print(f"raw limit (fetch + orjson decode): {raw:,.0f} events/s", flush=True)
        pipe = pipeline(settings, args.events, args.max_pipeline_s, tmp / "pipeline.log")
        print(f"pipeline: {pipe['events_per_s']:,.0f} events/s "
              f"({'drained' if pipe['drained'] else 'not drained'} after "
              f"{pipe['elapsed_s']:.0f} s)", flush=True)
        bare = faust_bare(settings, args.events, args.max_pipeline_s, tmp)
        print(f"bare Faust agent (take batches + orjson decode): "
              f"{bare['events_per_s']:,.0f} events/s", flush=True)
        lat: dict[str, Any] = {}
        half = max(1, int(pipe["second_half_events_per_s"] / 2))
        for rate in [*rates, half]:
            s = worker_settings(base, tmp, f"lat{rate}")
            asyncio.run(ensure_topics(s))
            worker = start_worker(s, tmp / f"lat{rate}.log")
            try:
                vms = args.latency_vms or max(1, rate // 4)
                lat[str(rate)] = asyncio.run(latency(
                    s, Fleet(args.data, vms, args.step_s), rate, args.warmup_s, args.latency_s))
                lat[str(rate)]["vms"] = vms
            finally:
                stop_process(worker)
            r = lat[str(rate)]
            bound = " (lower bounds)" if r["censored"] else ""
            p50, p99 = (math.nan if v is None else v for v in (r["p50"], r["p99"]))
            print(f"latency at {rate:,} events/s offered: p50 {p50:,.0f} ms, p99 {p99:,.0f} ms"
                  f"{bound}; processed {r['processed_events_per_s']:,.0f}/s, kept up: "
                  f"{r['kept_up']}", flush=True)
        result = {
            "raw_events_per_s": raw,
            "pipeline_events_per_s": pipe["events_per_s"],
            "ratio": pipe["events_per_s"] / raw,
            "faust_bare_events_per_s": bare["events_per_s"],
            "pipeline_vs_faust": pipe["events_per_s"] / bare["events_per_s"],
            "latency_ms": {str(r): {"p50": lat[str(r)]["p50"], "p99": lat[str(r)]["p99"]}
                           for r in rates},
            "latency_ms_at_half_pipeline_rate": {"rate": half, "p50": lat[str(half)]["p50"],
                                                 "p99": lat[str(half)]["p99"]},
            "pipeline": pipe,
            "faust_bare": bare,
            "latency_detail": lat,
            "preload_events_per_s": produce_rate,
            "targets": {"pipeline_events_per_s": 5_000, "pipeline_vs_faust": 0.5,
                        "p99_ms_at_5000": 250, "p99_ms_at_2500": 100},
            "cpus": os.cpu_count(),
        }
        write_result(args.out, result, "throughput.py", argv, args)
        print(f"ratio {result['ratio']:.4f}, pipeline/faust "
              f"{result['pipeline_vs_faust']:.3f}; written {args.out}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
