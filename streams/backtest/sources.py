"""What a backtest reads: NAB-format series and Bitbrains-format VM traces, plain or gzipped.

:func:`discover` walks the given files and folders (folders recursively, ``.csv`` and
``.csv.gz``), tells the two formats apart by their header, and returns

* one :class:`SeriesFile` per NAB-format file (``timestamp,value``): a single series, learned
  as one VM with one metric. The metric is named from the file name when it says what it
  measures (``cpu`` -> ``cpu_pct``, ``disk_write`` -> ``disk_write_bytes_per_s``, ``network_in``
  -> ``net_rx_bytes_per_s`` ...), so incidents are classed as the service would class them;
  any other series is ``value`` (its incidents are ``unknown``);
* one :class:`Fleet` per folder of Bitbrains files (``<month>/<vm>.csv.gz``), replayed as the
  service sees them: every VM's samples merged in time order, four VMs per host;
* the files it skipped and why (an unknown header, an unreadable file).

Rows that cannot be read (a bad timestamp or value) are counted by reason, never fatal: a
backtest, like the stream, loses nothing silently.

>>> metric_for("ec2_cpu_utilization_24ae8d.csv"), metric_for("iio_us-east-1_i-a_NetworkIn.csv")
('cpu_pct', 'net_rx_bytes_per_s')
>>> metric_for("elb_request_count_8c0756.csv")
'value'
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streams.backtest.nab_scoring import FloatArray, open_text, parse_timestamps
from streams.traces import TraceError

#: File-name patterns (lower case, in order) and the metric a NAB-format series is learned as.
METRIC_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"cpu", "cpu_pct"),
    (r"mem", "memory_used_bytes"),
    (r"disk_?read|diskread", "disk_read_bytes_per_s"),
    (r"disk_?write|diskwrite", "disk_write_bytes_per_s"),
    (r"network_?in|networkin|net_?rx", "net_rx_bytes_per_s"),
    (r"network_?out|networkout|net_?tx", "net_tx_bytes_per_s"),
)
GENERIC_METRIC = "value"
LABELS_FILE = Path("labels") / "combined_windows.json"


def metric_for(filename: str) -> str:
    """The metric a NAB-format series is learned as, from its file name."""
    name = filename.lower()
    for pattern, metric in METRIC_PATTERNS:
        if re.search(pattern, name):
            return metric
    return GENERIC_METRIC


@dataclass
class SeriesFile:
    """One NAB-format file: ``key`` is ``<folder>/<name>.csv`` (NAB's label key)."""

    key: str
    path: Path
    metric: str
    #: label windows as epoch-second pairs (empty: none given)
    windows: list[tuple[float, float]] = field(default_factory=list)
    labelled: bool = False

    @property
    def name(self) -> str:
        """A short name for plots and tables: the file name without ``.csv``."""
        return self.key.rsplit("/", 1)[-1].removesuffix(".csv")


@dataclass
class Fleet:
    """Bitbrains-format files under ``root``: VM number -> its files, months in order."""

    root: Path
    files: dict[int, list[Path]]


@dataclass
class Sources:
    series: list[SeriesFile] = field(default_factory=list)
    fleets: list[Fleet] = field(default_factory=list)
    #: path -> why it was not used
    skipped: dict[str, str] = field(default_factory=dict)
    #: the label files used
    label_files: list[Path] = field(default_factory=list)


@dataclass
class SeriesData:
    """The readable rows of a NAB-format file, in file order, and the rows refused."""

    timestamps: FloatArray
    values: FloatArray
    rejected: Counter[str]


def _header(path: Path) -> str:
    with open_text(path) as fh:
        return fh.readline().strip()


def _csv_files(paths: Sequence[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file()
                              and (f.name.endswith(".csv") or f.name.endswith(".csv.gz")))
        elif p.is_file():
            yield p
        else:
            raise TraceError(f"{p}: no such file or folder")


def _bitbrains_vm(path: Path) -> int | None:
    stem = path.name.split(".")[0]
    return int(stem) if stem.isdigit() else None


def discover(paths: Sequence[Path], labels: Path | None = None) -> Sources:
    """The series and fleets under ``paths`` (see the module docstring)."""
    out = Sources()
    fleets: dict[Path, dict[int, list[Path]]] = {}
    for path in _csv_files(paths):
        try:
            header = _header(path)
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            out.skipped[str(path)] = f"unreadable: {exc}"
            continue
        columns = [c.strip().lower() for c in header.split(",")]
        if header.startswith("Timestamp") and ";" in header:
            vm = _bitbrains_vm(path)
            if vm is None:
                out.skipped[str(path)] = "Bitbrains header, but the file is not named <vm>.csv.gz"
                continue
            root = path.parent.parent
            fleets.setdefault(root, {}).setdefault(vm, []).append(path)
        elif columns[:2] == ["timestamp", "value"]:
            name = path.name.removesuffix(".gz")
            out.series.append(SeriesFile(f"{path.parent.name}/{name}", path, metric_for(name)))
        else:
            out.skipped[str(path)] = f"unknown format (header {header[:60]!r})"
    for root, files in sorted(fleets.items()):
        out.fleets.append(Fleet(root, {vm: sorted(fs, key=lambda p: p.parent.name)
                                       for vm, fs in sorted(files.items())}))
    _attach_labels(out, labels)
    return out


def _label_file_for(path: Path) -> Path | None:
    """``labels/combined_windows.json`` of the NAB tree that holds ``path``."""
    for parent in path.resolve().parents:
        candidate = parent / LABELS_FILE
        if candidate.is_file():
            return candidate
    return None


def _attach_labels(sources: Sources, labels: Path | None) -> None:
    tables: dict[Path, dict[str, list[list[str]]]] = {}

    def table(path: Path) -> dict[str, list[list[str]]]:
        if path not in tables:
            try:
                tables[path] = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise TraceError(f"labels {path}: {exc}") from None
            if not isinstance(tables[path], dict):
                raise TraceError(f"labels {path}: expected an object of file key -> windows")
            sources.label_files.append(path)
        return tables[path]

    if labels is not None:
        table(labels)
    for s in sources.series:
        source = labels if labels is not None else _label_file_for(s.path)
        if source is None:
            continue
        limits = table(source).get(s.key)
        if limits is None:
            continue
        try:
            pairs = [(float(a), float(b)) for a, b in
                     (parse_timestamps([str(w[0]), str(w[1])]) for w in limits)]
        except (ValueError, TypeError, IndexError) as exc:
            raise TraceError(f"labels {source}: bad window for {s.key}: {exc}") from None
        s.windows, s.labelled = pairs, True


def read_series(path: Path, limit: int | None = None) -> SeriesData:
    """The rows of a NAB-format file; unreadable rows are counted by reason and left out."""
    stamps: list[str] = []
    values: list[float] = []
    rejected: Counter[str] = Counter()
    with open_text(path) as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for row in reader:
            if not row:
                continue
            if limit is not None and len(values) >= limit:
                break
            if len(row) < 2:
                rejected["missing column"] += 1
                continue
            try:
                value = float(row[1])
            except ValueError:
                rejected["value not a number"] += 1
                continue
            if not math.isfinite(value):
                rejected["value not finite"] += 1
                continue
            stamps.append(row[0].strip())
            values.append(value)
    times = _timestamps(stamps, rejected)
    keep = np.isfinite(times)
    return SeriesData(times[keep], np.asarray(values, dtype=np.float64)[keep], rejected)


def _timestamps(texts: list[str], rejected: Counter[str]) -> FloatArray:
    try:
        return parse_timestamps(texts) if texts else np.empty(0)
    except ValueError:
        pass
    out = np.empty(len(texts))
    for i, t in enumerate(texts):
        try:
            out[i] = parse_timestamps([t])[0]
        except ValueError:
            out[i] = math.nan
            rejected["bad timestamp"] += 1
    return out


def window_rows(timestamps: FloatArray, windows: Sequence[tuple[float, float]]
                ) -> list[tuple[int, int]]:
    """Label windows (epoch pairs) as inclusive row ranges: the first row at or after the
    start and the last at or before the end (NAB's rows when the limits are in the file);
    windows with no row are dropped."""
    out = []
    for start, end in windows:
        a = int(np.searchsorted(timestamps, start, side="left"))
        b = int(np.searchsorted(timestamps, end, side="right")) - 1
        if a <= b:
            out.append((a, b))
    return out
