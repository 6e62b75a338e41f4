"""NAB scoring: a faithful, fast port of the Numenta Anomaly Benchmark's reference scorer.

Ported from numenta/NAB at ea702d75 (MIT): ``nab/sweeper.py`` (``calcSweepScore``,
``calcScoreByThreshold``), ``nab/optimizer.py`` (``optimizeThreshold``), ``nab/scorer.py``
(``scoreCorpus``) and the ``normalize`` step of ``nab/runner.py``. The rules, exactly as NAB
applies them:

* **Probation.** The first ``min(floor(0.15 * n), 0.15 * 5000)`` rows of a file (at most 750)
  are not scored at all: a detection there neither helps nor costs, and a window whose rows all
  lie in it is not scored (but still counts in the *perfect* score, see below).
* **Detection.** Row ``i`` is a detection when ``anomaly_score[i] >= threshold``.
* **Inside a window** (rows ``[a, b]``, width ``W = b - a + 1``) only the best - i.e. the
  earliest - detection counts: ``tpWeight * S(-(b - i + 1) / W) / S(-1)``, where
  ``S(x) = 2 * sigmoid(-5 x) - 1`` (``scaledSigmoid``). A detection on the first row earns exactly
  ``tpWeight``; one on the last row earns ``tpWeight * S(-1/W) / S(-1)``, about ``0.0125`` for
  ``W = 402``. A window with no detection costs ``-fnWeight``.
* **Outside windows** every detection counts: ``fpWeight * S((i - b_prev) / (W_prev - 1))``
  where ``b_prev``, ``W_prev`` belong to the closest *preceding* window; the value is negative
  except right after a window (``S(0) = 0``; ``S(x) = -1`` for ``x > 3``). A detection before
  the file's first window costs the full ``-fpWeight``.
* **Threshold.** One threshold per detector and profile, for the whole corpus, chosen to
  maximise the corpus raw score. NAB sorts every scored row by anomaly score (descending) and
  evaluates the raw score at each distinct score value, plus a start threshold of 1.1 (nothing
  detected); ties go to the highest threshold.
* **Normalisation.** ``100 * (raw - null) / (perfect - null)``: ``null`` is NAB's null detector
  (a constant 0.5 score, threshold-optimised like any other; in practice it never fires, so
  ``null = -fnWeight * windows``) and ``perfect = tpWeight * (number of windows in the labels)``.

The sweep here is vectorised (one sort per detector, cumulative sums, a running maximum per
window), so scoring a detector on the 28-file development corpus takes milliseconds.

Usage::

    corpus = load_corpus(Path("../shared/data/nab"))
    scores = {s.key: my_detector(s.timestamps, s.values) for s in corpus.series}
    results = corpus.evaluate(scores)          # {profile name: ProfileScore}
    results["standard"].score                   # normalised NAB score
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Fraction of each file that is never scored (NAB's ``probationaryPercent``).
PROBATION_PERCENT = 0.15
#: NAB's sweep starts above every score: at this threshold nothing is detected.
START_THRESHOLD = 1.1


@dataclass(frozen=True)
class Profile:
    """A NAB application profile: the weights of its cost matrix."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


#: NAB's three profiles (``config/profiles.json``).
NAB_PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


def sigmoid(x: float) -> float:
    """Standard logistic function, as NAB computes it."""
    return 1 / (1 + math.exp(-x))


def scaled_sigmoid(position: float) -> float:
    """NAB's ``scaledSigmoid``: ``2 * sigmoid(-5 x) - 1``, and ``-1`` for ``x > 3``.

    ``x = -1`` is a window's left edge (0.98661), ``x = 0`` its right edge (0), ``x > 0`` a false
    positive ``x`` window-widths after the window.

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
    (0.98661, 0.0, -1.0)
    """
    if position > 3.0:
        return -1.0
    return 2 * sigmoid(-5 * position) - 1.0


def probationary_length(n_rows: int, percent: float = PROBATION_PERCENT) -> float:
    """Rows ``i < probationary_length(n)`` are not scored (NAB's ``_getProbationaryLength``).

    >>> probationary_length(4032), probationary_length(10000)
    (604, 750.0)
    """
    return min(math.floor(percent * n_rows), percent * 5000)


def normalized_score(raw: float, null: float, perfect: float) -> float:
    """NAB's normalisation: 100 for ``perfect``, 0 for ``null``."""
    if perfect == null:
        raise ValueError("perfect and null scores coincide: the corpus has no scored window")
    return 100.0 * (raw - null) / (perfect - null)


def parse_timestamps(texts: Sequence[str]) -> FloatArray:
    """Parse NAB timestamps (``YYYY-MM-DD HH:MM:SS[.ffffff]``, no zone) as UTC epoch seconds."""
    try:
        stamps = np.array(texts, dtype="datetime64[us]")
        return stamps.astype(np.int64).astype(np.float64) / 1e6
    except ValueError:
        return np.array(
            [datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp() for t in texts],
            dtype=np.float64,
        )


@dataclass(frozen=True, eq=False)
class Series:
    """One NAB data file.

    ``windows`` are inclusive row ranges ``(first_row, last_row)``, in label order: the first
    row whose timestamp equals the window's start, and the first row whose timestamp equals its
    end (NAB's ``timestamps.index(...)``). ``timestamp_text`` / ``value_text`` keep the file's
    own strings so results can be written back in NAB's layout verbatim.
    """

    key: str
    timestamps: FloatArray
    values: FloatArray
    windows: tuple[tuple[int, int], ...] = ()
    timestamp_text: tuple[str, ...] = ()
    value_text: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.timestamps) != len(self.values):
            raise ValueError(f"{self.key}: {len(self.timestamps)} timestamps, "
                             f"{len(self.values)} values")
        for a, b in self.windows:
            if not 0 <= a <= b < len(self.values):
                raise ValueError(f"{self.key}: window rows {(a, b)} out of range")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def category(self) -> str:
        """The data sub-folder, e.g. ``realAWSCloudwatch``."""
        return self.key.rsplit("/", 1)[0] if "/" in self.key else ""

    @property
    def filename(self) -> str:
        """The file name as NAB names it, e.g. ``ec2_cpu_utilization_24ae8d.csv``."""
        return self.key.rsplit("/", 1)[-1]

    @property
    def labels(self) -> IntArray:
        """1 on the rows inside a window, else 0 (NAB's ``label`` column)."""
        out = np.zeros(len(self), dtype=np.int64)
        for a, b in self.windows:
            out[a : b + 1] = 1
        return out


@dataclass(frozen=True)
class ProfileScore:
    """A detector's NAB result for one profile, at its corpus-optimal threshold.

    ``tp``/``fp``/``fn``/``tn`` are NAB's row counts over the scored (post-probation) rows;
    ``windows_detected`` counts the scored windows with at least one detection.
    """

    profile: str
    score: float
    raw: float
    threshold: float
    null_raw: float
    perfect_raw: float
    tp: int
    fp: int
    fn: int
    tn: int
    windows_detected: int
    windows: int


@dataclass(frozen=True)
class _Layout:
    """Score-independent part of NAB's sweep over the scored rows of the whole corpus."""

    rows: IntArray  # index of each scored row in the concatenation of all series' rows
    window: IntArray  # corpus-wide window id, or -1 outside every window
    tp_unit: FloatArray  # NAB sweepScore / tpWeight for window rows (0 elsewhere)
    fp_unit: FloatArray  # NAB sweepScore / fpWeight for rows outside windows (0 elsewhere)
    n_rows: int  # rows in the corpus, scored or not
    n_windows: int  # windows that have at least one scored row


def _series_layout(
    series: Series, percent: float
) -> tuple[BoolArray, IntArray, FloatArray, FloatArray]:
    """Literal port of ``Sweeper.calcSweepScore`` with the weights factored out.

    Returns, per row: scored (post-probation), local window index or -1, the TP unit score and
    the FP unit score.
    """
    n = len(series)
    times = series.timestamps.tolist()
    limits = [(times[a], times[b]) for a, b in series.windows]
    max_tp = scaled_sigmoid(-1.0)
    prob = probationary_length(n, percent)

    window = np.full(n, -1, dtype=np.int64)
    tp_unit = np.zeros(n, dtype=np.float64)
    fp_unit = np.zeros(n, dtype=np.float64)

    pending = list(enumerate(limits))
    cur: tuple[int, tuple[float, float]] | None = None
    cur_right = cur_width = 0.0
    prev_right: int | None = None
    prev_width = 0.0
    for i, t in enumerate(times):
        if pending and t == pending[0][1][0]:
            cur = pending.pop(0)
            cur_right = float(times.index(cur[1][1]))
            cur_width = cur_right - times.index(cur[1][0]) + 1
        if cur is not None:
            window[i] = cur[0]
            tp_unit[i] = scaled_sigmoid(-(cur_right - i + 1) / cur_width) / max_tp
        elif prev_right is None:
            fp_unit[i] = -1.0
        elif prev_width > 1:
            fp_unit[i] = scaled_sigmoid(abs(prev_right - i) / (prev_width - 1))
        else:  # a one-row window: NAB divides by zero here; count the FP as far away
            fp_unit[i] = -1.0
        if cur is not None and t == cur[1][1]:
            prev_right, prev_width = i, cur_width
            cur = None
    scored = np.arange(n) >= prob
    return scored, window, tp_unit, fp_unit


@dataclass(frozen=True)
class _Curve:
    """The raw score after each distinct threshold of the sweep (thresholds descending)."""

    thresholds: FloatArray
    raw: FloatArray
    tp: IntArray
    fp: IntArray
    windows_detected: IntArray


@dataclass(eq=False)
class Corpus:
    """A set of labelled series and the NAB profiles to score them with."""

    series: list[Series]
    profiles: dict[str, Profile] = field(default_factory=lambda: dict(NAB_PROFILES))
    probation_percent: float = PROBATION_PERCENT

    @property
    def keys(self) -> list[str]:
        """The series' keys (``<category>/<file>.csv``), in corpus order."""
        return [s.key for s in self.series]

    @property
    def n_windows(self) -> int:
        """All label windows, scored or not: NAB's ``tpCount`` for the perfect score."""
        return sum(len(s.windows) for s in self.series)

    def by_category(self) -> dict[str, Corpus]:
        """One corpus per data folder (NAB's categories), in name order, with this corpus's
        profiles: scoring one optimizes its threshold on that category alone."""
        out: dict[str, list[Series]] = {}
        for s in self.series:
            out.setdefault(s.category, []).append(s)
        return {c: Corpus(series=ss, profiles=self.profiles,
                          probation_percent=self.probation_percent)
                for c, ss in sorted(out.items())}

    def perfect_raw(self, profile: Profile) -> float:
        """NAB's perfect score: ``tpWeight`` per window (a detection on each window's first row)."""
        return self.n_windows * profile.tp_weight

    @cached_property
    def _layout(self) -> _Layout:
        rows, window, tp_unit, fp_unit = [], [], [], []
        offset = 0
        window_base = 0
        for s in self.series:
            scored, win, tp, fp = _series_layout(s, self.probation_percent)
            rows.append(np.flatnonzero(scored) + offset)
            window.append(np.where(win[scored] >= 0, win[scored] + window_base, -1))
            tp_unit.append(tp[scored])
            fp_unit.append(fp[scored])
            offset += len(s)
            window_base += len(s.windows)
        all_window = np.concatenate(window) if window else np.zeros(0, dtype=np.int64)
        return _Layout(
            rows=np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
            window=all_window,
            tp_unit=np.concatenate(tp_unit) if tp_unit else np.zeros(0),
            fp_unit=np.concatenate(fp_unit) if fp_unit else np.zeros(0),
            n_rows=offset,
            n_windows=len(np.unique(all_window[all_window >= 0])),
        )

    def _scored(self, scores: Mapping[str, Sequence[float] | FloatArray]) -> FloatArray:
        """Concatenate a detector's per-row scores in corpus order, keeping the scored rows."""
        parts = []
        for s in self.series:
            if s.key not in scores:
                raise KeyError(f"no scores for {s.key}")
            arr = np.asarray(scores[s.key], dtype=np.float64)
            if arr.shape != (len(s),):
                raise ValueError(f"{s.key}: {arr.shape[0]} scores for {len(s)} rows")
            parts.append(arr)
        flat = np.concatenate(parts) if parts else np.zeros(0)
        out = flat[self._layout.rows]
        if not np.all(np.isfinite(out)):
            raise ValueError("anomaly scores must be finite (NaN cannot be ordered by the sweep)")
        return out

    def _curve(self, scores: FloatArray, order: IntArray, profile: Profile) -> _Curve:
        """``calcScoreByThreshold`` over the whole corpus, vectorised.

        ``order`` sorts ``scores`` descending (stable). The raw score after activating the
        first ``k`` sorted rows is ``-fnWeight * windows`` plus the FP terms of the active rows
        outside windows plus, per window, the gain of its running best TP term over
        ``-fnWeight``.
        """
        lay = self._layout
        win = lay.window[order]
        inside = win >= 0
        delta = np.where(inside, 0.0, lay.fp_unit[order] * profile.fp_weight)
        detected_at = np.zeros(len(order), dtype=np.int64)

        pos = np.flatnonzero(inside)
        if len(pos):
            by_window = np.argsort(win[pos], kind="stable")
            pos = pos[by_window]
            wins = win[pos]
            vals = lay.tp_unit[order][pos] * profile.tp_weight
            cuts = np.flatnonzero(np.diff(wins)) + 1
            for seg in np.split(np.arange(len(pos)), cuts):
                best = np.maximum.accumulate(np.maximum(vals[seg], -profile.fn_weight))
                delta[pos[seg]] = np.diff(best, prepend=-profile.fn_weight)
                detected_at[pos[seg[0]]] = 1

        s_sorted = scores[order]
        ends = np.flatnonzero(np.diff(s_sorted) != 0)
        ends = np.append(ends, len(order) - 1) if len(order) else ends
        base = -profile.fn_weight * lay.n_windows
        raw = base + np.cumsum(delta)
        tp = np.cumsum(inside)
        fp = np.cumsum(~inside)
        det = np.cumsum(detected_at)

        thresholds = np.concatenate([[START_THRESHOLD], s_sorted[ends]])
        curve = _Curve(
            thresholds=thresholds,
            raw=np.concatenate([[base], raw[ends]]),
            tp=np.concatenate([[0], tp[ends]]).astype(np.int64),
            fp=np.concatenate([[0], fp[ends]]).astype(np.int64),
            windows_detected=np.concatenate([[0], det[ends]]).astype(np.int64),
        )
        if len(order) and s_sorted[0] == START_THRESHOLD:
            # NAB records the empty state only when the top score differs from 1.1.
            curve = _Curve(*(getattr(curve, f)[1:] for f in _Curve.__dataclass_fields__))
        return curve

    def _best(self, scores: FloatArray, order: IntArray, profile: Profile) -> tuple[int, _Curve]:
        curve = self._curve(scores, order, profile)
        return int(np.argmax(curve.raw)), curve

    @cached_property
    def null_raw(self) -> dict[str, float]:
        """Raw score of NAB's null detector (constant 0.5, threshold-optimised) per profile."""
        scores = np.full(len(self._layout.rows), 0.5)
        order = np.arange(len(scores), dtype=np.int64)
        out = {}
        for name, profile in self.profiles.items():
            k, curve = self._best(scores, order, profile)
            out[name] = float(curve.raw[k])
        return out

    def evaluate(
        self, scores: Mapping[str, Sequence[float] | FloatArray]
    ) -> dict[str, ProfileScore]:
        """Score a detector: per profile, optimise the threshold on the corpus and normalise.

        ``scores`` maps each series key to its per-row anomaly scores.
        """
        flat = self._scored(scores)
        order = np.argsort(-flat, kind="stable").astype(np.int64)
        lay = self._layout
        n_in = int(np.count_nonzero(lay.window >= 0))
        n_out = len(lay.window) - n_in
        out = {}
        for name, profile in self.profiles.items():
            k, curve = self._best(flat, order, profile)
            raw = float(curve.raw[k])
            null = self.null_raw[name]
            perfect = self.perfect_raw(profile)
            tp, fp = int(curve.tp[k]), int(curve.fp[k])
            out[name] = ProfileScore(
                profile=name,
                score=normalized_score(raw, null, perfect),
                raw=raw,
                threshold=float(curve.thresholds[k]),
                null_raw=null,
                perfect_raw=perfect,
                tp=tp,
                fp=fp,
                fn=n_in - tp,
                tn=n_out - fp,
                windows_detected=int(curve.windows_detected[k]),
                windows=lay.n_windows,
            )
        return out

    def raw_score_at(
        self,
        scores: Mapping[str, Sequence[float] | FloatArray],
        profile: Profile | str,
        threshold: float,
    ) -> float:
        """Raw NAB score at a fixed threshold (rows with ``score >= threshold`` detect).

        Computed directly (no sweep): the sum of the FP terms of detections outside windows,
        plus per scored window its best TP term, or ``-fnWeight`` when nothing detects in it.
        """
        prof = self.profiles[profile] if isinstance(profile, str) else profile
        flat = self._scored(scores)
        lay = self._layout
        active = flat >= threshold
        inside = lay.window >= 0
        total = float(np.sum(lay.fp_unit[active & ~inside])) * prof.fp_weight
        best = np.full(self.n_windows, -np.inf)
        hit = active & inside
        np.maximum.at(best, lay.window[hit], lay.tp_unit[hit] * prof.tp_weight)
        scored_windows = np.unique(lay.window[inside])
        per_window = np.maximum(best[scored_windows], -prof.fn_weight)
        return total + float(np.sum(per_window))

    def score_at(
        self,
        scores: Mapping[str, Sequence[float] | FloatArray],
        profile: Profile | str,
        threshold: float,
    ) -> float:
        """Normalised NAB score at a fixed threshold."""
        prof = self.profiles[profile] if isinstance(profile, str) else profile
        raw = self.raw_score_at(scores, prof, threshold)
        return normalized_score(raw, self.null_raw[prof.name], self.perfect_raw(prof))


# --------------------------------------------------------------------------- files


def open_text(path: Path) -> io.TextIOBase:
    """A ``.csv`` or ``.csv.gz`` file as text."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a ``.csv`` or ``.csv.gz`` file."""
    with open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [row for row in reader if row]
    return header, rows


def _find_csv(base: Path) -> Path:
    """``base`` (a ``.csv`` path), or its ``.csv.gz`` sibling."""
    if base.exists():
        return base
    gz = base.with_name(base.name + ".gz")
    if gz.exists():
        return gz
    raise FileNotFoundError(f"neither {base} nor {gz} exists")


def load_profiles(path: Path) -> dict[str, Profile]:
    """NAB's ``config/profiles.json``."""
    raw = json.loads(path.read_text())
    return {
        name: Profile(
            name,
            float(p["CostMatrix"]["tpWeight"]),
            float(p["CostMatrix"]["fpWeight"]),
            float(p["CostMatrix"]["fnWeight"]),
        )
        for name, p in raw.items()
    }


def _window_rows(
    key: str, times: FloatArray, limits: Sequence[Sequence[str]]
) -> list[tuple[int, int]]:
    """Window limits (timestamp strings) -> inclusive row ranges, as NAB locates them."""
    out = []
    index: dict[float, int] = {}
    for i, t in enumerate(times.tolist()):
        index.setdefault(t, i)
    for limit in limits:
        a, b = (float(x) for x in parse_timestamps([str(limit[0]), str(limit[1])]))
        if a not in index or b not in index:
            raise ValueError(f"{key}: window {list(limit)} has a timestamp not in the file")
        out.append((index[a], index[b]))
    return out


def load_series(path: Path, key: str, limits: Sequence[Sequence[str]] = ()) -> Series:
    """One NAB data file (``timestamp,value``) with its label windows (timestamp pairs)."""
    header, rows = read_csv(path)
    cols = {name.strip(): i for i, name in enumerate(header)}
    ti, vi = cols["timestamp"], cols["value"]
    t_text = tuple(r[ti] for r in rows)
    v_text = tuple(r[vi] for r in rows)
    times = parse_timestamps(t_text)
    return Series(
        key=key,
        timestamps=times,
        values=np.array([float(v) for v in v_text], dtype=np.float64),
        windows=tuple(_window_rows(key, times, limits)),
        timestamp_text=t_text,
        value_text=v_text,
    )


def load_corpus(
    root: Path,
    *,
    keys: Iterable[str] | None = None,
    probation_percent: float = PROBATION_PERCENT,
) -> Corpus:
    """Load a folder laid out like NAB's: ``data/<category>/<file>.csv[.gz]``,
    ``labels/combined_windows.json`` and (optionally) ``config/profiles.json``.

    ``keys`` restricts the corpus to some files (``<category>/<file>.csv``). Every data file
    must have an entry in the windows file, as in NAB.
    """
    root = Path(root)
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    profiles_path = root / "config" / "profiles.json"
    profiles = load_profiles(profiles_path) if profiles_path.exists() else dict(NAB_PROFILES)
    wanted = set(keys) if keys is not None else None

    found: dict[str, Path] = {}
    for path in sorted((root / "data").glob("*/*")):
        name = path.name
        if name.endswith(".csv.gz"):
            name = name[: -len(".gz")]
        elif not name.endswith(".csv"):
            continue
        key = f"{path.parent.name}/{name}"
        if wanted is not None and key not in wanted:
            continue
        if key in found and found[key].suffix != ".gz":
            continue  # prefer the plain .csv when both exist
        found[key] = path
    if wanted is not None and (missing := wanted - set(found)):
        raise FileNotFoundError(f"no data file for {sorted(missing)}")

    series = []
    for key in sorted(found):
        if key not in windows:
            raise KeyError(f"{key} has no entry in combined_windows.json")
        series.append(load_series(found[key], key, windows[key]))
    return Corpus(series=series, profiles=profiles, probation_percent=probation_percent)


def results_path(results_root: Path, detector: str, series: Series) -> Path:
    """NAB's results layout: ``<root>/<detector>/<category>/<detector>_<file>.csv``."""
    return Path(results_root) / detector / series.category / f"{detector}_{series.filename}"


def load_results(results_root: Path, detector: str, corpus: Corpus) -> dict[str, FloatArray]:
    """A detector's ``anomaly_score`` column for every series, from NAB's results layout
    (``.csv`` or ``.csv.gz``)."""
    out = {}
    for s in corpus.series:
        path = _find_csv(results_path(results_root, detector, s))
        header, rows = read_csv(path)
        col = [h.strip() for h in header].index("anomaly_score")
        if len(rows) != len(s):
            raise ValueError(f"{path}: {len(rows)} rows, the data file has {len(s)}")
        out[s.key] = np.array([float(r[col]) for r in rows], dtype=np.float64)
    return out


def write_results(
    results_root: Path,
    detector: str,
    corpus: Corpus,
    scores: Mapping[str, Sequence[float] | FloatArray],
) -> list[Path]:
    """Write a detector's scores in NAB's results layout (``timestamp,value,anomaly_score,
    label``; the data file's own timestamp and value strings; scores clipped to [0, 1])."""
    written = []
    for s in corpus.series:
        path = results_path(results_root, detector, s)
        path.parent.mkdir(parents=True, exist_ok=True)
        clipped = np.clip(np.asarray(scores[s.key], dtype=np.float64), 0.0, 1.0)
        t_text = s.timestamp_text or tuple(
            datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") for t in s.timestamps
        )
        v_text = s.value_text or tuple(repr(float(v)) for v in s.values)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["timestamp", "value", "anomaly_score", "label"])
            for t, v, a, lab in zip(t_text, v_text, clipped.tolist(), s.labels.tolist(),
                                    strict=True):
                w.writerow([t, v, repr(a), lab])
        written.append(path)
    return written
