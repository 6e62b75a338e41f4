"""The worker compiles the learners' kernels before it consumes (``warm_up``): afterwards
processing real metrics compiles nothing more, so no batch stalls the event loop (and the
web server with it) for a compilation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from pathlib import Path
from numba.core.registry import CPUDispatcher
import agents.anomaly, agents.forecasting
import pkgutil, importlib
from prometheus_client import CollectorRegistry
import orjson
from agents.warm import warm_up
from agents.pipeline import PipelineConfig
from agents.processor import Inbound, MetricsProcessor
from streams.observability import WorkerMetrics
from agents.state_layout import state_codec
from streams.traces import read_fleet

def compiled():
    out = {}
    for pkg in (agents.anomaly, agents.forecasting):
        for info in pkgutil.iter_modules(pkg.__path__):
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
            for name, obj in vars(mod).items():
                if isinstance(obj, CPUDispatcher) and obj.__module__ == mod.__name__:
                    out[f"{mod.__name__}.{name}"] = len(obj.signatures)
    return out

warm_up()
before = compiled()
store = {}
proc = MetricsProcessor(PipelineConfig(), state_codec(b"k"), load_state=store.get,
                        metrics=WorkerMetrics(CollectorRegistry()))
msgs = list(read_fleet(Path(sys.argv[1]), vms=2, per_vm_limit=200))
batch = [Inbound(m["vm_id"].encode(), orjson.dumps(m), "vm.metrics", 0, i)
         for i, m in enumerate(msgs)]
for i in range(0, len(batch), 50):
    proc.process(batch[i:i + 50], now=1.9e9)
print(json.dumps({"before": before, "after": compiled(), "events": len(batch)}))
"""


def test_processing_after_warm_up_compiles_nothing(tmp_path: Path, bitbrains_dir: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}  # an empty cache: a first start
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(bitbrains_dir)], cwd=REPO_ROOT,
                         env=env, capture_output=True, text=True, timeout=600, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["events"] == 400
    assert sum(seen["before"].values()) >= 10, "warm_up compiled the kernels"
    assert seen["after"] == seen["before"], "processing compiled a kernel warm_up missed"
