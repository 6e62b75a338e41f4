"""A digest of everything the worker's processor publishes over a slice of real traces, to
check that a change meant to be a pure speed-up changes no output.

Runs ``--events`` samples of ``--vms`` tiled Bitbrains VMs (:class:`bench.throughput.Fleet`,
``--step-s`` apart in event time) through :class:`agents.processor.MetricsProcessor` in
batches of 500 with a fixed clock, and prints, per output topic, the number of records and a
SHA-256 of them in order. With ``--roundtrip`` every VM's state also goes through the state
codec after each batch, as when a worker takes a partition over. Run it on the commit before
a change and after it: the two lines must be equal.

Usage::

    python bench/digest.py [--vms 40] [--events 24000] [--step-s 300] [--roundtrip]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.metrics_agent import pipeline_config  # noqa: E402
from agents.processor import MetricsProcessor  # noqa: E402
from agents.state_layout import state_codec  # noqa: E402
from bench.offline import messages  # noqa: E402
from streams.observability import WorkerMetrics  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.traces import DEFAULT_BITBRAINS_DIR  # noqa: E402

TOPICS = ("alerts", "forecasts", "recommendations", "drifts", "host_reports", "deadletters")
_NOW = 1.8e9  # the processor's wall clock: fixed, so that nothing depends on when it runs


def digest(data: Path, vms: int, events: int, step_s: float, roundtrip: bool
           ) -> dict[str, tuple[int, str]]:
    """Per output topic: (records, SHA-256 of their values in order, first 16 hex digits)."""
    msgs = messages(data, vms, events, step_s)
    proc = MetricsProcessor(pipeline_config(Settings.from_env()), state_codec(b"digest"),
                            lambda _: None, WorkerMetrics(registry=None),
                            max_future_skew_s=1e12, state_flush_s=0)
    hashes = {t: hashlib.sha256() for t in TOPICS}
    counts = dict.fromkeys(TOPICS, 0)
    for i in range(0, len(msgs), 500):
        result = proc.process(msgs[i:i + 500], _NOW)
        for topic in TOPICS:
            for _, value in getattr(result, topic):
                hashes[topic].update(value + b"\n")
                counts[topic] += 1
        if roundtrip:
            proc.cache = {k: proc.codec.loads(proc.codec.dumps(v, subject=k), subject=k)
                          for k, v in proc.cache.items()}
    return {t: (counts[t], hashes[t].hexdigest()[:16]) for t in TOPICS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vms", type=int, default=40)
    p.add_argument("--events", type=int, default=24_000)
    p.add_argument("--step-s", type=float, default=300.0,
                   help="event time between a VM's samples (300: forecasts on every sample)")
    p.add_argument("--roundtrip", action="store_true",
                   help="encode and decode every VM state after each batch")
    p.add_argument("--data", type=Path, default=DEFAULT_BITBRAINS_DIR)
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"--data {args.data} is not a folder (see ../shared/data/README.md)")
    if args.vms < 1 or args.events < 1 or args.step_s <= 0:
        p.error("--vms, --events and --step-s must be positive")
    print(json.dumps(digest(args.data, args.vms, args.events, args.step_s, args.roundtrip)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
