"""Replay real traces to ``vm.metrics`` as the hypervisor agents would publish them.

Messages are keyed by vm_id and sent with aiokafka (murmur2 partitioner, like the Java and
Go/librdkafka ``murmur2_random`` clients), paced at ``speedup`` seconds of trace per wall
second, or as fast as possible with ``speedup=0``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaProducer

from streams.clients import start_client
from streams.settings import Settings
from streams.topics import metrics_topic
from streams.traces import bitbrains_files, count_rows, read_fleet


@dataclass
class ReplayStats:
    sent: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    elapsed_s: float = 0.0


class Progress:
    """A one-line progress bar on a terminal (plain periodic lines elsewhere)."""

    def __init__(self, total: int, out: TextIO = sys.stderr, every_s: float = 0.5,
                 label: str = "replay") -> None:
        self.total = max(total, 1)
        self.label = label
        self.out = out
        self.every_s = every_s if out.isatty() else 5.0
        self.started = time.monotonic()
        self.last_shown = 0.0

    def update(self, done: int, trace_ts: float | None, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last_shown < self.every_s:
            return
        self.last_shown = now
        rate = done / max(now - self.started, 1e-9)
        pct = min(100.0, 100.0 * done / self.total)
        bar = "#" * int(pct / 5)
        line = (f"{self.label} [{bar:<20}] {done:,}/{self.total:,} ({pct:4.1f}%) "
                f"{rate:,.0f} events/s")
        if trace_ts is not None:
            line += f", trace time {time.strftime('%Y-%m-%d %H:%M', time.gmtime(trace_ts))} UTC"
        end = "\n" if final or not self.out.isatty() else ""
        self.out.write(("\r" if self.out.isatty() else "") + line + end)
        self.out.flush()


async def send_messages(settings: Settings, messages: Iterable[dict[str, Any]], *,
                        speedup: float = 0.0,
                        on_sent: Callable[[int, float], None] | None = None,
                        stop: asyncio.Event | None = None) -> ReplayStats:
    """Publish ``messages`` (dicts in ``vm.metrics`` v1 form) keyed by vm_id."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5,
                                max_batch_size=256 * 1024, acks="all",
                                **settings.kafka_client_options())
    await start_client(producer)
    stats = ReplayStats()
    topic = settings.topic(metrics_topic.name)
    wall0 = time.monotonic()
    try:
        for msg in messages:
            if stop is not None and stop.is_set():
                break
            ts = float(msg["timestamp"])
            if stats.first_ts is None:
                stats.first_ts = ts
            if speedup > 0:
                ahead = (ts - stats.first_ts) / speedup - (time.monotonic() - wall0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await producer.send(topic, key=msg["vm_id"].encode(), value=orjson.dumps(msg))
            stats.sent += 1
            stats.last_ts = ts
            if on_sent is not None:
                on_sent(stats.sent, ts)
            if stats.sent % 1000 == 0:
                await asyncio.sleep(0)  # let the producer's sender task run
        await producer.flush()
    finally:
        await producer.stop()
    stats.elapsed_s = time.monotonic() - wall0
    return stats


async def replay_bitbrains(settings: Settings, data_dir: Path, *, vms: int | None = None,
                           per_vm_limit: int | None = None, speedup: float = 0.0,
                           progress: bool = True, stop: asyncio.Event | None = None
                           ) -> ReplayStats:
    """Replay the Bitbrains traces under ``data_dir`` (see :mod:`streams.traces`)."""
    bitbrains_files(data_dir, vms)  # fail on a wrong folder before connecting to Kafka
    bar = Progress(count_rows(bitbrains_files(data_dir, vms), per_vm_limit)) if progress \
        else None
    stats = await send_messages(
        settings, read_fleet(data_dir, vms, per_vm_limit), speedup=speedup,
        on_sent=(lambda n, ts: bar.update(n, ts)) if bar else None, stop=stop)
    if bar:
        bar.update(stats.sent, stats.last_ts, final=True)
    return stats

