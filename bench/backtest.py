"""How fast ``novacron backtest`` runs: the NAB AWS CloudWatch folder and, with
``--bitbrains``, the whole Bitbrains folder, each as an operator would run it.

Each run is the real command in a subprocess (``python -m streams.cli backtest ... --plots 0``,
a fresh temporary report folder); its ``metrics.json`` gives the samples and the seconds of the
pipeline (reading and learning, the plots excluded); ``processes`` is the ``--jobs`` given
(default one per CPU): the NAB series are one job each, a Bitbrains folder is a single job (its
VMs share hosts), so it runs in one process. Writes
``{"nab": {"samples", "seconds", "samples_per_s", "incidents", "nab": {"windows",
"windows_detected", "false_positives", <profile>: score}}, "bitbrains": {...}}`` to ``--out``.

Usage::

    python bench/backtest.py [--data ../shared/data] [--bitbrains] [--jobs N]
                             [--out bench/results/backtest.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "bench" / "results" / "backtest.json"


def run(path: Path, jobs: int | None) -> dict[str, Any]:
    """One ``novacron backtest`` of ``path``; its figures."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "streams.cli", "backtest", str(path), "--out", out,
               "--plots", "0", "--no-progress"] + (["--jobs", str(jobs)] if jobs else [])
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        m = json.loads((Path(out) / "metrics.json").read_text())
    nab = m["nab"]
    return {"command": f"novacron backtest {os.path.relpath(path, REPO)}",
            "samples": m["events"], "seconds": m["seconds"],
            "samples_per_s": round(m["events"] / m["seconds"]),
            "incidents": m["incidents"]["total"],
            "nab": None if nab is None else {
                "windows": nab["windows"], "windows_detected": nab["windows_detected"],
                "false_positives": nab["false_positives"],
                **{name: p["score"] for name, p in nab["profiles"].items()}},
            "processes": jobs or os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--bitbrains", action="store_true",
                   help="also the whole Bitbrains folder (about 10 minutes on 2 cores)")
    p.add_argument("--jobs", type=int, default=None, help="processes (default: one per CPU)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    nab = args.data / "nab" / "data" / "realAWSCloudwatch"
    if not nab.is_dir():
        p.error(f"{nab} is not a folder (see ../shared/data/README.md)")
    result = {"nab": run(nab, args.jobs)}
    if args.bitbrains:
        result["bitbrains"] = run(args.data / "bitbrains_rnd", args.jobs)
    for name, r in result.items():
        print(f"{name}: {r['samples']:,} samples in {r['seconds']:.1f} s = "
              f"{r['samples_per_s']:,} samples/s on {r['processes']} processes")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
