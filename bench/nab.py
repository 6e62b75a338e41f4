"""Score our detector beside River, NAB's baselines and NAB's published detectors, on NAB data.

    python bench/nab.py [--data ../shared/data/nab] [--results-dir DIR]
                        [--out bench/results/nab.json] [--only NAME,...]

Detectors, all scored in one run by ``streams.backtest.nab_scoring`` (NAB's own rules; one
threshold per detector and profile, optimised over the whole corpus):

* ``ours`` - ``agents.anomaly.vm.score_fleet``: the service's per-VM detector with one metric
  (``value``), every file a row of one ``FleetDetector``, each online and independent of the
  others; the score of a row is its evidence through Numenta's likelihood filter (``onset``).
* ``ours_range``, ``ours_seasonal``, ``ours_level``, ``ours_analog`` - each member of ours
  alone (its evidence through the same filter), to judge the candidates one by one.
* ``river_hst`` - River ``anomaly.HalfSpaceTrees`` with its default parameters (10 trees, height
  8, window 250; ``seed=42`` only to make runs repeatable) on ``{"value": v}``, behind a
  ``preprocessing.MinMaxScaler`` because the trees' default feature limits are [0, 1]: River's
  documented pipeline. Online, score-then-learn per row, one fresh model per file.
* ``windowed_gaussian`` - NAB's ``windowedGaussian`` baseline, ported from
  ``nab/detectors/gaussian/windowedGaussian_detector.py``: the score is ``1 - Q(|z|)`` of the
  value against the mean and standard deviation of the preceding values (window 6400, slid by
  100 once full).
* ``null`` - NAB's null detector (a constant 0.5; never fires at its optimal threshold).
* every detector under ``<data>/published_results/`` - the per-row ``anomaly_score`` columns
  NAB published (NAB's ``windowedGaussian`` is named ``published_windowedGaussian`` here).

Writes ``{"ours": "ours", "detectors": {name: {profile: score}}, "categories": {category:
{name: {profile: score}}}}`` (scores rounded to 0.1; a category's scores with thresholds
optimised on that category alone; a category without windows has none) to ``--out`` and the
thresholds, counts, timings and state sizes to ``<out stem>_details.json`` beside it. With
``--results-dir`` every detector's per-row scores are also written in NAB's results layout, so
NAB's own ``run.py --optimize --score --normalize`` can re-score them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streams.backtest.nab_scoring import (  # noqa: E402
    Corpus,
    FloatArray,
    ProfileScore,
    load_corpus,
    load_results,
    write_results,
)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nab"
DEFAULT_OUT = ROOT / "bench" / "results" / "nab.json"
OURS = "ours"
PROFILE_ORDER = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

Scores = dict[str, FloatArray]


# --------------------------------------------------------------------------- detectors


#: Bytes of learned state of one series (a row of the univariate detector), and of a VM of six
#: metrics (its series, trees and joint members): see :func:`state_bytes`.
STATE_BYTES: dict[str, int] = {}


def state_bytes() -> dict[str, int]:
    """The detector's state, in bytes of its arrays: per series, and per VM of six metrics."""
    from agents.anomaly.series import SeriesDetector
    from agents.anomaly.vm import FleetDetector

    def nbytes(obj: object) -> int:
        return sum(v.nbytes for v in vars(obj).values() if isinstance(v, np.ndarray)) + sum(
            nbytes(v) for v in vars(obj).values() if hasattr(v, "__dict__")
            and type(v).__module__.startswith("agents."))

    return {"series": nbytes(SeriesDetector(rows=1)), "vm": nbytes(FleetDetector(rows=1))}


def run_ours(corpus: Corpus) -> Scores:
    """The service's per-VM detector with one metric, every file a row of one fleet
    (``agents.anomaly.vm.score_fleet``)."""
    from agents.anomaly.vm import score_fleet

    STATE_BYTES.update(state_bytes())
    out = score_fleet([s.timestamps for s in corpus.series], [s.values for s in corpus.series])
    return {s.key: o for s, o in zip(corpus.series, out, strict=True)}


def run_members(corpus: Corpus) -> dict[str, Scores]:
    """Each univariate member of ours alone: its evidence through the same onset filter."""
    from agents.anomaly.likelihood import onset
    from agents.anomaly.series import MEMBERS
    from agents.anomaly.vm import FleetDetector

    series = corpus.series
    det = FleetDetector(("value",), rows=len(series))
    kept = [k for k in MEMBERS if k != "trend"]  # trend watches memory only
    out = {k: {s.key: np.zeros(len(s)) for s in series} for k in kept}
    previous = np.zeros((len(series), len(MEMBERS)))
    lengths = np.array([len(s) for s in series])
    for step in range(int(lengths.max(initial=0))):
        rows = np.nonzero(lengths > step)[0]
        t = np.array([series[r].timestamps[step] for r in rows])
        x = np.array([[series[r].values[step]] for r in rows])
        scored = det.score_many(rows, t, x)
        det.learn_many(rows, t, x, scored)
        evidence = scored.evidence[:, : len(MEMBERS)]
        filtered = onset(evidence, previous[rows])
        previous[rows] = evidence
        for j, kind in enumerate(MEMBERS):
            if kind in out:
                for i, r in enumerate(rows.tolist()):
                    e = float(filtered[i, j])
                    out[kind][series[r].key][step] = e / (e + 10.0)
    return {f"ours_{k}": v for k, v in out.items()}


_MEMBERS_CACHE: dict[int, dict[str, Scores]] = {}


def _member(name: str) -> Callable[[Corpus], Scores]:
    def run(corpus: Corpus) -> Scores:
        cached = _MEMBERS_CACHE.get(id(corpus))
        if cached is None:
            cached = _MEMBERS_CACHE[id(corpus)] = run_members(corpus)
        return cached[name]

    return run


def run_river_hst(corpus: Corpus) -> Scores:
    """River HalfSpaceTrees (defaults, seeded) behind a MinMaxScaler, score-then-learn."""
    from river import anomaly, preprocessing

    out = {}
    for s in corpus.series:
        model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
        scores = np.empty(len(s))
        for i, v in enumerate(s.values.tolist()):
            x = {"value": v}
            scores[i] = model.score_one(x)
            model.learn_one(x)
        out[s.key] = scores
    return out


def _normal_probability(x: float, mean: float, std: float) -> float:
    """NAB's ``normalProbability``: the Gaussian tail probability ``Q`` (symmetric)."""
    if x < mean:
        xp = 2 * mean - x
        return _normal_probability(xp, mean, std)
    z = (x - mean) / std
    return 0.5 * math.erfc(z / math.sqrt(2))


def windowed_gaussian_scores(
    values: Sequence[float] | FloatArray, window_size: int = 6400, step_size: int = 100
) -> FloatArray:
    """Port of NAB's ``WindowedGaussianDetector.handleRecord`` over one series.

    The window is always a contiguous run of past values (it grows to ``window_size``, then
    slides by ``step_size`` whenever that many new values have been buffered), so it is kept as
    a slice; mean and std are recomputed exactly when NAB recomputes them.
    """
    data = np.asarray(values, dtype=np.float64)
    out = np.zeros(len(data))
    lo = hi = 0  # window = data[lo:hi]; the step buffer = data[hi:i]
    mean, std = 0.0, 1.0
    for i, v in enumerate(data.tolist()):
        if hi > lo:
            out[i] = 1 - _normal_probability(v, mean, std)
        if hi - lo < window_size:
            hi = i + 1
        elif i + 1 - hi == step_size:
            lo, hi = lo + step_size, i + 1
        else:
            continue
        # numpy.mean / numpy.std, spelt out as NumPy computes them (pairwise sum / n; the
        # same for the squared deviations): bit-identical, without the wrappers' overhead.
        window = data[lo:hi]
        mean = float(np.add.reduce(window) / (hi - lo))
        dev = window - mean
        std = float(np.sqrt(np.add.reduce(dev * dev) / (hi - lo)))
        if std == 0.0:
            std = 0.000001
    return out


def run_windowed_gaussian(corpus: Corpus) -> Scores:
    """NAB's windowedGaussian baseline, re-implemented."""
    return {s.key: windowed_gaussian_scores(s.values) for s in corpus.series}


def run_null(corpus: Corpus) -> Scores:
    """NAB's null detector: a constant 0.5."""
    return {s.key: np.full(len(s), 0.5) for s in corpus.series}


def published_detectors(data: Path) -> dict[str, str]:
    """Our name -> the folder name under ``published_results/``."""
    root = data / "published_results"
    if not root.is_dir():
        return {}
    out = {}
    for d in sorted(p.name for p in root.iterdir() if p.is_dir()):
        out["published_windowedGaussian" if d == "windowedGaussian" else d] = d
    return out


def detector_table(data: Path) -> dict[str, tuple[str, Callable[[Corpus], Scores]]]:
    """Every detector this run can score: name -> (source, scores function)."""
    table: dict[str, tuple[str, Callable[[Corpus], Scores]]] = {
        OURS: ("agents.anomaly.vm.score_fleet", run_ours),
        **{f"ours_{m}": (f"agents.anomaly.vm.FleetDetector, member {m} alone", _member(f"ours_{m}"))
           for m in ("range", "seasonal", "level", "analog")},
        "river_hst": ("river MinMaxScaler | HalfSpaceTrees(defaults, seed=42)", run_river_hst),
        "windowed_gaussian": ("NAB windowedGaussian, re-implemented", run_windowed_gaussian),
        "null": ("NAB null detector (constant 0.5)", run_null),
    }
    root = data / "published_results"
    for name, folder in published_detectors(data).items():

        def load(corpus: Corpus, folder: str = folder) -> Scores:
            return load_results(root, folder, corpus)

        table[name] = (f"published_results/{folder}", load)
    return table


# --------------------------------------------------------------------------- output


def format_table(results: dict[str, dict[str, ProfileScore]]) -> str:
    """Detector x profile table, best standard score first."""
    rows = sorted(results.items(), key=lambda kv: -kv[1]["standard"].score)
    width = max([len("detector"), *(len(n) for n in results)])
    head = f"{'detector':<{width}}  " + "  ".join(f"{p:>18}" for p in PROFILE_ORDER)
    lines = [head, "-" * len(head)]
    for name, res in rows:
        lines.append(
            f"{name:<{width}}  " + "  ".join(f"{res[p].score:>18.1f}" for p in PROFILE_ORDER)
        )
    return "\n".join(lines)


def format_categories(by_category: dict[str, dict[str, dict[str, float]]]) -> str:
    """Per category, the standard-profile score of every detector (best first)."""
    lines = []
    for category, scores in by_category.items():
        ranked = sorted(scores.items(), key=lambda kv: -kv[1]["standard"])
        lines.append(f"{category}: " + ", ".join(f"{n} {v['standard']:.1f}" for n, v in ranked))
    return "\n".join(lines)


def details(
    corpus: Corpus,
    data: Path,
    results: dict[str, dict[str, ProfileScore]],
    sources: dict[str, str],
    seconds: dict[str, float],
    total_seconds: float,
) -> dict[str, object]:
    """Thresholds, counts and timings per detector, and what the corpus is worth."""
    span = {p: corpus.perfect_raw(prof) - corpus.null_raw[p] for p, prof in corpus.profiles.items()}
    return {
        "data": str(data),
        "files": corpus.keys,
        "rows": sum(len(s) for s in corpus.series),
        "windows": corpus.n_windows,
        "probation_percent": corpus.probation_percent,
        "profiles": {
            p: {
                "tp_weight": prof.tp_weight,
                "fp_weight": prof.fp_weight,
                "fn_weight": prof.fn_weight,
                "null_raw": corpus.null_raw[p],
                "perfect_raw": corpus.perfect_raw(prof),
                "points_per_window": round(100 * (prof.tp_weight + prof.fn_weight) / span[p], 4),
                "points_per_far_false_positive": round(100 * prof.fp_weight / span[p], 4),
            }
            for p, prof in corpus.profiles.items()
        },
        "seconds_total": round(total_seconds, 2),
        "ours_state_bytes": STATE_BYTES or None,
        "detectors": {
            name: {
                "source": sources[name],
                "seconds": round(seconds[name], 2),
                **{
                    p: {
                        "score": round(r.score, 3),
                        "raw": round(r.raw, 6),
                        "threshold": r.threshold,
                        "windows_detected": r.windows_detected,
                        "windows": r.windows,
                        "tp_rows": r.tp,
                        "fp_rows": r.fp,
                        "fn_rows": r.fn,
                        "tn_rows": r.tn,
                    }
                    for p, r in res.items()
                },
            }
            for name, res in results.items()
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB-layout folder")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="also write every detector's per-row scores in NAB's layout here")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="summary JSON")
    parser.add_argument("--only", default="", help="comma-separated detector names")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data: Path = args.data.resolve()
    table = detector_table(data)
    names = list(table)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        if unknown := [n for n in names if n not in table]:
            parser.error(f"unknown detector(s) {unknown}; available: {', '.join(table)}")

    corpus = load_corpus(data)
    print(f"NAB corpus: {len(corpus.series)} files, {corpus.n_windows} windows "
          f"({time.perf_counter() - started:.1f}s to load)", file=sys.stderr)

    results: dict[str, dict[str, ProfileScore]] = {}
    # a category without any window (artificialNoAnomaly) has no NAB score
    categories = {c: sub for c, sub in corpus.by_category().items() if sub.n_windows}
    by_category: dict[str, dict[str, dict[str, float]]] = {c: {} for c in categories}
    seconds: dict[str, float] = {}
    for i, name in enumerate(names, 1):
        t0 = time.perf_counter()
        # Clipped as written to --results-dir, so a re-score of those files matches.
        scores = {k: np.clip(v, 0.0, 1.0) for k, v in table[name][1](corpus).items()}
        results[name] = corpus.evaluate(scores)
        for category, sub in categories.items():
            res = sub.evaluate({k: scores[k] for k in sub.keys})
            by_category[category][name] = {p: round(res[p].score, 1) for p in PROFILE_ORDER}
        if args.results_dir is not None:
            write_results(args.results_dir, name, corpus, scores)
        seconds[name] = time.perf_counter() - t0
        summary = " / ".join(f"{results[name][p].score:.1f}" for p in PROFILE_ORDER)
        print(f"[{i}/{len(names)}] {name}: {summary} ({seconds[name]:.1f}s)", file=sys.stderr)

    total = time.perf_counter() - started
    print(format_table(results))
    print(format_categories(by_category))
    print(f"({len(names)} detectors, {total:.1f}s)", file=sys.stderr)

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    summary_json = {
        "ours": OURS,
        "detectors": {
            name: {p: round(res[p].score, 1) for p in PROFILE_ORDER}
            for name, res in results.items()
        },
        "categories": by_category,
    }
    out.write_text(json.dumps(summary_json, indent=2) + "\n")
    sources = {n: table[n][0] for n in names}
    detail_path = out.with_name(out.stem + "_details.json")
    detail_path.write_text(
        json.dumps(details(corpus, data, results, sources, seconds, total), indent=2) + "\n"
    )
    print(f"wrote {out} and {detail_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
