"""``novacron run``: a local broker, a worker and a live replay, shown as they happen.

Starts what is missing (a local Kafka broker unless ``KAFKA_BOOTSTRAP_SERVERS`` is set), creates
the topics, starts a worker process, replays the Bitbrains traces into ``vm.metrics`` and shows
what comes out. On a terminal: a board redrawn every 2 s (:class:`streams.live.LiveBoard`:
throughput and lag, the busiest VMs, open incidents, latest recommendations). Elsewhere (pipes,
CI): a line per alert and recommendation, as ``novacron tail`` prints them, and a status line
every few seconds. Ctrl-C (or ``--duration``) stops everything it started, in reverse order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TextIO

from aiokafka import AIOKafkaConsumer

from streams.admin import ensure_topics
from streams.broker import REPO_ROOT, LocalKafka, free_port
from streams.clients import start_client
from streams.live import DEADLETTERED, LAG, PROCESSED, TOPICS, LiveBoard, RateMeter
from streams.replay import send_messages
from streams.settings import Settings
from streams.tail import Palette, decode_record, format_line
from streams.traces import read_fleet

RUN_DIR = REPO_ROOT / ".novacron"
_STATUS_EVERY_S = 5.0
_REDRAW_EVERY_S = 2.0
#: what the line-per-record output (no terminal) reads
_LINE_TOPICS = ("vm.alerts", "vm.recommendations", "vm.forecasts", "vm.deadletter")


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a child process."""
    env = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        env[f.metadata["env"]] = str(value)
    return env


class Console:
    """Lines for people: colored on a terminal (unless NO_COLOR), plain elsewhere; records
    as the rows of ``novacron tail`` (:mod:`streams.tail`), tagged with their kind."""

    TAGS = {"vm.alerts": ("alerts", "ALERT    "),
            "vm.recommendations": ("recommendations", "RECOMMEND")}

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.palette = Palette.for_stream(out)
        self.tty = bool(getattr(out, "isatty", lambda: False)())

    def paint(self, text: str, style: str) -> str:
        return self.palette.paint(text, style)

    def print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def record(self, topic: str, value: dict[str, Any]) -> None:
        """One line for an alert or a recommendation (other topics: nothing)."""
        if topic not in self.TAGS:
            return
        stream, tag = self.TAGS[topic]
        try:
            line = format_line(stream, value, self.palette)
        except (KeyError, TypeError, ValueError, AttributeError):
            self.print(self.paint(f"(skipped a malformed record of {topic})", "dim"))
            return
        self.print(f"{tag} {line}")


def spawn_worker(settings: Settings, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A ``novacron worker`` process configured by ``settings``, its output to ``log``, in a
    session of its own (so :func:`stop_process` stops it and its children)."""
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=REPO_ROOT,
                            env={**os.environ, **settings_env(settings)}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM ``proc``'s process group (started with ``start_new_session``), then SIGKILL
    if it has not stopped within ``timeout_s``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def worker_samples(port: int) -> dict[str, float]:
    """A worker's Prometheus samples by name with labels, e.g.
    ``novacron_consumer_lag_messages{partition="0",topic="vm.metrics"}`` ({} if it does not
    answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            body = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = out.get(name, 0.0) + float(value)
    return out


def sum_samples(samples: dict[str, float]) -> dict[str, float]:
    """Samples added up over labels, by metric name.

    >>> sum_samples({'a_total{x="1"}': 1.0, 'a_total{x="2"}': 2.0, "b": 5.0})
    {'a_total': 3.0, 'b': 5.0}
    """
    out: dict[str, float] = {}
    for name, value in samples.items():
        key = name.split("{")[0]
        out[key] = out.get(key, 0.0) + value
    return out


def worker_counters(port: int) -> dict[str, float]:
    """A worker's Prometheus samples, added up over labels ({} if it does not answer)."""
    return sum_samples(worker_samples(port))


def topic_lag(samples: dict[str, float], topic: str) -> float:
    """Messages of ``topic`` the worker has not read yet, over its partitions (the lag gauge
    also covers the tables' changelog topics, whose lag says nothing about keeping up).

    >>> topic_lag({'novacron_consumer_lag_messages{partition="0",topic="vm.metrics"}': 4.0,
    ...            'novacron_consumer_lag_messages{partition="1",topic="vm.metrics"}': 1.0,
    ...            'novacron_consumer_lag_messages{partition="0",topic="x-changelog"}': 9.0},
    ...           "vm.metrics")
    5.0
    """
    label = f'topic="{topic}"'
    return sum(v for k, v in samples.items()
               if k.startswith(LAG + "{") and label in k.split("{", 1)[1].rstrip("}").split(","))


def view_counters(port: int, settings: Settings) -> dict[str, float]:
    """What the live view shows of a worker: its samples added up over labels, except the
    lag, which is that of the metrics topic only."""
    samples = worker_samples(port)
    counters = sum_samples(samples)
    if counters:
        counters[LAG] = topic_lag(samples, settings.topic("vm.metrics"))
    return counters


def wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path,
               timeout_s: float = 120.0) -> None:
    """Block until the worker's ``/readyz`` answers 200 (its tables recovered, not
    rebalancing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with code {proc.returncode}; see {log_path}")
        with contextlib.suppress(OSError), urllib.request.urlopen(
                f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the worker was not ready within {timeout_s:.0f} s; see {log_path}")


async def _watch(settings: Settings, topics: tuple[str, ...],
                 on_record: Callable[[str, dict[str, Any]], None], from_start: bool) -> None:
    """Read ``topics`` (base names) outside any group, handing each record's JSON object to
    ``on_record``; records that are not JSON objects are counted as ``malformed`` and
    skipped."""
    names = {settings.topic(t): t for t in topics}
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest" if from_start else "latest",
                                enable_auto_commit=False, **settings.kafka_client_options())
    await start_client(consumer)
    try:
        async for record in consumer:
            topic = names[record.topic]
            try:
                value = decode_record(record.value)
            except ValueError:
                on_record("malformed", {})
                continue
            on_record(topic, value)
    finally:
        await consumer.stop()


def _status_line(counters: dict[str, float], counts: Counter[str], sent: int,
                 rate: float) -> str:
    return (f"-- replayed {sent:,} ({rate:,.0f}/s) | processed "
            f"{counters.get(PROCESSED, 0):,.0f} | metrics lag {counters.get(LAG, 0):,.0f} | "
            f"dead letters {counters.get(DEADLETTERED, 0):,.0f} | alerts "
            f"{counts['vm.alerts']:,} | forecasts {counts['vm.forecasts']:,} | "
            f"recommendations {counts['vm.recommendations']:,}")


async def _status(console: Console, counts: Counter[str], sent: list[int], port: int,
                  settings: Settings) -> None:
    """Without a terminal: a status line every few seconds."""
    meter = RateMeter()
    meter.update(0, time.monotonic())
    while True:
        await asyncio.sleep(_STATUS_EVERY_S)
        rate = meter.update(sent[0], time.monotonic())
        c = await asyncio.to_thread(view_counters, port, settings)
        console.print(console.paint(_status_line(c, counts, sent[0], rate), "dim"))


class _Screen:
    """Redraws the live board in place: clear once, then home and overwrite each line."""

    def __init__(self, console: Console, board: LiveBoard, sent: list[int]) -> None:
        self.console, self.board, self.sent = console, board, sent
        self.meter = RateMeter()
        self.drawn = False

    def draw(self, counters: dict[str, float]) -> None:
        rate = self.meter.update(counters.get(PROCESSED, 0.0), time.monotonic())
        size = shutil.get_terminal_size()
        lines = self.board.render(size.columns, counters, replayed=self.sent[0],
                                  events_per_s=rate, palette=self.console.palette,
                                  height=size.lines - 1)
        start = "\033[H" if self.drawn else "\033[2J\033[H"
        self.console.out.write(start + "".join(f"{line}\033[K\n" for line in lines)
                               + "\033[J")
        self.console.out.flush()
        self.drawn = True

    async def run(self, port: int, settings: Settings) -> None:
        while True:
            self.draw(await asyncio.to_thread(view_counters, port, settings))
            await asyncio.sleep(_REDRAW_EVERY_S)


async def _live(settings: Settings, args: argparse.Namespace, console: Console, port: int,
                from_start: bool) -> None:
    board = LiveBoard()
    board.links = f"status page: http://127.0.0.1:{port}/  (per-VM drill-down: /vm/<vm_id>)"
    counts = board.counts
    sent = [0]

    def on_sent(n: int, ts: float) -> None:
        sent[0] = n

    redraw = console.tty and os.environ.get("TERM", "") != "dumb"
    screen = _Screen(console, board, sent) if redraw else None
    if screen is None:
        def on_record(topic: str, value: dict[str, Any]) -> None:
            counts[topic] += 1
            console.record(topic, value)

        def say(line: str) -> None:
            console.print(line)

        tasks = [asyncio.create_task(_watch(settings, _LINE_TOPICS, on_record, from_start)),
                 asyncio.create_task(_status(console, counts, sent, port, settings))]
    else:
        def say(line: str) -> None:
            board.note = line

        tasks = [asyncio.create_task(_watch(settings, TOPICS, board.observe, from_start)),
                 asyncio.create_task(screen.run(port, settings))]
    try:
        replay = send_messages(settings, read_fleet(args.data, args.vms, args.limit),
                               speedup=args.speedup, on_sent=on_sent)
        if args.duration:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_replay_then_wait(replay, say), args.duration)
        else:
            await _replay_then_wait(replay, say)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if screen is not None:
            screen.draw(view_counters(port, settings))
        console.print(f"summary: replayed {sent[0]:,} events; alerts {counts['vm.alerts']}"
                      f", forecasts {counts['vm.forecasts']}, recommendations "
                      f"{counts['vm.recommendations']}, dead letters "
                      f"{counts['vm.deadletter']}")


async def _replay_then_wait(replay: Any, say: Callable[[str], None]) -> None:
    stats = await replay
    say(f"replay finished: {stats.sent:,} events in {stats.elapsed_s:.0f} s; "
        "still listening, Ctrl-C to stop")
    await asyncio.Event().wait()


def run_all(settings: Settings, args: argparse.Namespace) -> int:
    """Everything `make run` does; returns an exit code."""
    console = Console()
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    RUN_DIR.mkdir(exist_ok=True)
    kafka: LocalKafka | None = None
    worker: subprocess.Popen[bytes] | None = None
    log_file = None
    try:
        if not settings.bootstrap_servers:
            console.print("starting a local Kafka broker (the first run fetches it with Maven)")
            kafka = LocalKafka().start()
            console.print(f"Kafka {kafka.bootstrap_servers} (log: {kafka.log_path})")
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=RUN_DIR))
        settings = dataclasses.replace(
            settings, bootstrap_servers=kafka.bootstrap_servers if kafka else
            settings.bootstrap_servers, data_dir=str(run_dir / "worker-data"),
            web_port=free_port() if kafka else settings.web_port)
        asyncio.run(ensure_topics(settings))
        log_path = run_dir / "worker.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed below
        worker = spawn_worker(settings, log_file)
        console.print(f"starting a worker (log: {log_path}, status page: "
                      f"http://127.0.0.1:{settings.web_port}/, metrics: "
                      f"http://127.0.0.1:{settings.web_port}/metrics)")
        wait_ready(worker, settings.web_port, log_path)
        console.print(f"replaying {args.data} at {args.speedup:g}x; alerts and recommendations "
                      "follow as they are published. Ctrl-C stops everything.")
        asyncio.run(_live(settings, args, console, settings.web_port, from_start=bool(kafka)))
        return 0
    except KeyboardInterrupt:
        console.print("stopping")
        return 0
    finally:
        if worker is not None:
            stop_process(worker)
        if log_file is not None:
            log_file.close()
        if kafka is not None:
            kafka.stop()
        console.print("stopped the worker" + (" and the broker" if kafka else ""))
