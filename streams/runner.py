"""``novacron run``: a local broker, a worker and a live replay, shown as they happen.

Starts what is missing (a local Kafka broker unless ``KAFKA_BOOTSTRAP_SERVERS`` is set), creates
the topics, starts a worker process, replays the Bitbrains traces into ``vm.metrics`` and prints
alerts and recommendations as they arrive on their topics, with a status line every few
seconds. Ctrl-C (or ``--duration``) stops everything it started, in reverse order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer

from streams.admin import ensure_topics
from streams.broker import REPO_ROOT, LocalKafka, free_port
from streams.replay import send_messages
from streams.settings import Settings
from streams.traces import read_fleet

RUN_DIR = REPO_ROOT / ".novacron"
_STATUS_EVERY_S = 5.0


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
    """Lines for people: colored on a terminal, plain elsewhere."""

    COLORS = {"critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m",
              "low": "\033[36m", "scale_up": "\033[35m", "scale_down": "\033[32m",
              "migrate": "\033[34m", "resolved": "\033[32m", "dim": "\033[2m"}

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.color = out.isatty() and os.environ.get("NO_COLOR") is None

    def paint(self, text: str, style: str) -> str:
        if not self.color or style not in self.COLORS:
            return text
        return f"{self.COLORS[style]}{text}\033[0m"

    def print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def alert(self, a: dict[str, Any]) -> None:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(a["timestamp"]))
        style = "resolved" if a["status"] == "resolved" else a["severity"]
        head = self.paint(f"ALERT {a['status']:<8} {a['severity']:<8}", style)
        why = ", ".join(f"{f['name']}={f['value']:.4g} (baseline {f['baseline']:.4g}, "
                        f"z {f['zscore']:+.1f})" for f in a["features"][:2])
        self.print(f"{when} {head} {a['anomaly_class']:<18} {a['vm_id']} on {a['host_id']} "
                   f"score {a['score']:.2f}>{a['threshold']:.2f} {why}")

    def recommendation(self, r: dict[str, Any]) -> None:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["timestamp"]))
        head = self.paint(f"RECOMMEND {r['action']:<10}", r["action"])
        mem = f"{r['current_memory_bytes'] / 2**30:.1f}->{r['target_memory_bytes'] / 2**30:.1f} GiB"
        where = f" to {r['target_host']}" if r.get("target_host") else ""
        why = "; ".join(x for x in r["reasons"] if not x.startswith(("cpu forecast",
                                                                      "memory forecast")))
        self.print(f"{when} {head} {r['vm_id']}{where} vCPU {r['current_vcpus']}->"
                   f"{r['target_vcpus']}, memory {mem}: {why}")


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


def worker_counters(port: int) -> dict[str, float]:
    """A worker's Prometheus samples, added up over labels ({} if it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            body = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            key = name.split("{")[0]
            out[key] = out.get(key, 0.0) + float(value)
    return out


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path,
                timeout_s: float = 120.0) -> None:
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


async def _watch(settings: Settings, console: Console, counts: dict[str, int],
                 from_start: bool) -> None:
    names = {settings.topic(t): t for t in ("vm.alerts", "vm.recommendations", "vm.forecasts",
                                            "vm.deadletter")}
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest" if from_start else "latest",
                                enable_auto_commit=False, **settings.kafka_client_options())
    await consumer.start()
    try:
        async for record in consumer:
            topic = names[record.topic]
            counts[topic] = counts.get(topic, 0) + 1
            value = orjson.loads(record.value)
            if topic == "vm.alerts":
                console.alert(value)
            elif topic == "vm.recommendations":
                console.recommendation(value)
    finally:
        await consumer.stop()


async def _status(console: Console, counts: dict[str, int], sent: list[int], port: int
                  ) -> None:
    last_sent, last_t = 0, time.monotonic()
    while True:
        await asyncio.sleep(_STATUS_EVERY_S)
        now = time.monotonic()
        rate = (sent[0] - last_sent) / (now - last_t)
        last_sent, last_t = sent[0], now
        c = await asyncio.to_thread(worker_counters, port)
        console.print(console.paint(
            f"-- replayed {sent[0]:,} ({rate:,.0f}/s) | processed "
            f"{c.get('novacron_events_processed_total', 0):,.0f} | dead letters "
            f"{c.get('novacron_events_deadlettered_total', 0):,.0f} | alerts "
            f"{counts.get('vm.alerts', 0):,} | forecasts {counts.get('vm.forecasts', 0):,} | "
            f"recommendations {counts.get('vm.recommendations', 0):,}", "dim"))


async def _live(settings: Settings, args: argparse.Namespace, console: Console, port: int,
                from_start: bool) -> None:
    counts: dict[str, int] = {}
    sent = [0]

    def on_sent(n: int, ts: float) -> None:
        sent[0] = n

    tasks = [asyncio.create_task(_watch(settings, console, counts, from_start)),
             asyncio.create_task(_status(console, counts, sent, port))]
    try:
        replay = send_messages(settings, read_fleet(args.data, args.vms, args.limit),
                               speedup=args.speedup, on_sent=on_sent)
        if args.duration:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_replay_then_wait(replay, console), args.duration)
        else:
            await _replay_then_wait(replay, console)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        console.print(f"summary: replayed {sent[0]:,} events; alerts {counts.get('vm.alerts', 0)}"
                      f", forecasts {counts.get('vm.forecasts', 0)}, recommendations "
                      f"{counts.get('vm.recommendations', 0)}, dead letters "
                      f"{counts.get('vm.deadletter', 0)}")


async def _replay_then_wait(replay: Any, console: Console) -> None:
    stats = await replay
    console.print(f"replay finished: {stats.sent:,} events in {stats.elapsed_s:.0f} s; "
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
        console.print(f"starting a worker (log: {log_path}, metrics: "
                      f"http://127.0.0.1:{settings.web_port}/metrics)")
        _wait_ready(worker, settings.web_port, log_path)
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
