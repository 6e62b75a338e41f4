"""A bare Faust worker: the floor a Faust pipeline can reach on this machine and broker.

One agent on ``vm.metrics`` that takes batches exactly as the service's metrics agent does
(``stream.take_events(NOVACRON_BATCH_MAX_EVENTS, within=NOVACRON_BATCH_WITHIN_S)``), only
orjson-decodes each value, and acknowledges; no tables (an in-memory store), no outputs. It
is configured by the same environment as ``novacron worker`` (:mod:`streams.settings`) and
built with the same broker options, so ``bench/throughput.py`` can run it on the topic it
preloaded and compare the pipeline with it (``pipeline_vs_faust``).

When it has decoded ``--events`` events (or ``--max-s`` has passed since its first batch) it
writes ``{"events": n, "elapsed_s": s, "events_per_s": r, "drained": bool}`` to ``--out``
and exits. The rate counts from its first batch, as the pipeline's does.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python bench/faust_bare.py --events 1000000 \\
        --out /tmp/bare.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import faust  # noqa: E402
import orjson  # noqa: E402

from streams.app import broker_credentials, broker_urls  # noqa: E402
from streams.settings import Settings  # noqa: E402


def build(settings: Settings, events: int, max_s: float, out: Path) -> faust.App:
    app = faust.App(
        settings.app_id + "-bare",
        broker=broker_urls(settings.bootstrap_servers),
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        autodiscover=False,
        logging_config=None,
    )
    topic = app.topic(settings.topic("vm.metrics"), key_type=bytes, value_type=bytes,
                      partitions=settings.partitions, key_serializer="raw",
                      value_serializer="raw")
    seen = {"first_batch": 0, "total": 0}
    started = [0.0]

    def finish(drained: bool) -> None:
        elapsed = time.perf_counter() - started[0]
        n = seen["total"] - seen["first_batch"]
        out.write_text(json.dumps({"events": seen["total"], "elapsed_s": elapsed,
                                   "events_per_s": n / max(elapsed, 1e-9),
                                   "drained": drained}) + "\n")
        os._exit(0)  # the measurement is written; skip Faust's orderly shutdown

    @app.agent(topic)
    async def bare(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max_events,
                                               within=settings.batch_within_s):
            for event in events:
                orjson.loads(event.value)
            if not seen["total"]:
                started[0] = time.perf_counter()
                seen["first_batch"] = len(events)
            seen["total"] += len(events)
            if seen["total"] >= events_wanted:
                finish(True)
            if time.perf_counter() - started[0] > max_s:
                finish(False)

    events_wanted = events
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, required=True, help="stop after decoding this many")
    p.add_argument("--max-s", type=float, default=900.0, help="or after this long")
    p.add_argument("--out", type=Path, required=True, help="where to write the rate (JSON)")
    args = p.parse_args(argv)
    settings = Settings.from_env()
    if not settings.bootstrap_servers:
        p.error("KAFKA_BOOTSTRAP_SERVERS is empty")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = build(settings, args.events, args.max_s, args.out)
    worker = faust.Worker(app, loglevel="WARNING", loop=loop)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
