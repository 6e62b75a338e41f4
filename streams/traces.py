"""Readers for the real traces the project replays and benchmarks on.

Bitbrains GWA-T-12 "Rnd" files (``<month>/<vm>.csv.gz``, ``;\\t`` delimited, timestamps in
epoch seconds despite the ``[ms]`` header) become ``vm.metrics`` v1 messages: KB and KB/s are
turned into bytes and bytes/s, VM ``n`` is ``vm-NNN`` on host ``host-HH`` (four VMs per host;
the traces name no hosts).

>>> row = ";\\t".join(["1372629804", "2", "5851.9", "87.7", "1.5", "8218624.0", "1034592.8",
...                     "160.0", "21.0", "0.25", "1.5"])
>>> m = parse_bitbrains_row(row, vm_number=1)
>>> m["vm_id"], m["host_id"], m["cpu_pct"], m["memory_used_bytes"], m["net_rx_bytes_per_s"]
('vm-001', 'host-01', 1.5, 1059423027.2, 256.0)
"""

from __future__ import annotations

import gzip
import heapq
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_BITBRAINS_DIR = DEFAULT_DATA_DIR / "bitbrains_rnd"
VMS_PER_HOST = 4
_KIB = 1024.0


class TraceError(ValueError):
    """A trace folder or file cannot be read as expected."""


def vm_identity(vm_number: int) -> tuple[str, str]:
    """(vm_id, host_id) for Bitbrains VM number ``vm_number`` (1-based)."""
    return f"vm-{vm_number:03d}", f"host-{(vm_number - 1) // VMS_PER_HOST + 1:02d}"


def parse_bitbrains_row(line: str, vm_number: int) -> dict[str, Any]:
    """One Bitbrains CSV row as a ``vm.metrics`` v1 message (a dict)."""
    parts = [p.strip() for p in line.split(";")]
    if len(parts) != 11:
        raise TraceError(f"expected 11 columns, got {len(parts)}: {line[:80]!r}")
    ts, cores, _cap_mhz, _use_mhz, cpu_pct, mem_cap_kb, mem_use_kb, dr, dw, rx, tx = parts
    vm_id, host_id = vm_identity(vm_number)
    mem_total = float(mem_cap_kb) * _KIB
    return {
        "vm_id": vm_id,
        "host_id": host_id,
        "timestamp": float(ts),
        "cpu_pct": min(100.0, max(0.0, float(cpu_pct))),
        "memory_used_bytes": min(float(mem_use_kb) * _KIB, mem_total),
        "memory_total_bytes": mem_total,
        "vcpus": max(1, int(float(cores))),
        "disk_read_bytes_per_s": float(dr) * _KIB,
        "disk_write_bytes_per_s": float(dw) * _KIB,
        "net_rx_bytes_per_s": float(rx) * _KIB,
        "net_tx_bytes_per_s": float(tx) * _KIB,
    }


def bitbrains_files(data_dir: Path, vms: int | None = None) -> dict[int, list[Path]]:
    """The files of each VM number, months in order; the first ``vms`` VMs when given."""
    data_dir = Path(data_dir)
    months = sorted((p for p in data_dir.iterdir() if p.is_dir()), key=lambda p: p.name) \
        if data_dir.is_dir() else []
    files: dict[int, list[Path]] = {}
    for month in months:
        for f in month.glob("*.csv.gz"):
            files.setdefault(int(f.name.split(".")[0]), []).append(f)
    if not files:
        raise TraceError(f"no Bitbrains files (<month>/<vm>.csv.gz) under {data_dir}")
    numbers = sorted(files)[:vms] if vms else sorted(files)
    return {n: sorted(files[n], key=lambda p: p.parent.name) for n in numbers}


def read_vm(files: list[Path], vm_number: int, limit: int | None = None,
            unparseable: Counter[str] | None = None) -> Iterator[dict[str, Any]]:
    """The messages of one VM, in time order (across its month files).

    A row that cannot be parsed raises :class:`TraceError`, or with ``unparseable`` given is
    counted there (as ``"unparseable row"``) and skipped."""
    count = 0
    last_ts = float("-inf")
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt") as fh:
            next(fh, None)  # header
            for line in fh:
                if not line.strip():
                    continue
                try:
                    msg = parse_bitbrains_row(line, vm_number)
                except (TraceError, ValueError):
                    if unparseable is None:
                        raise
                    unparseable["unparseable row"] += 1
                    continue
                if msg["timestamp"] <= last_ts:
                    continue  # the month files overlap by a few rows at their seams
                last_ts = msg["timestamp"]
                yield msg
                count += 1
                if limit is not None and count >= limit:
                    return


def count_lines(path: Path) -> int:
    """Data rows of a file, plain or gzipped (its lines after the header)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        return max(0, sum(1 for _ in fh) - 1)


def count_rows(files: Mapping[int, list[Path]], per_vm_limit: int | None = None) -> int:
    """How many samples the VMs' files hold, at most ``per_vm_limit`` each (progress bars)."""
    total = 0
    for paths in files.values():
        n = sum(count_lines(p) for p in paths)
        total += min(n, per_vm_limit) if per_vm_limit else n
    return total


def read_fleet(data_dir: Path, vms: int | None = None, per_vm_limit: int | None = None
               ) -> Iterator[dict[str, Any]]:
    """Every VM's messages merged in timestamp order, as hypervisor agents would send them."""
    streams = [read_vm(paths, n, per_vm_limit) for n, paths in bitbrains_files(data_dir,
                                                                                vms).items()]
    yield from heapq.merge(*streams, key=lambda m: m["timestamp"])
