"""The NAB scorer (streams.backtest.nab_scoring) against NAB's rules and published figures."""

from __future__ import annotations

import gzip
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.nab import main as nab_main
from bench.nab import windowed_gaussian_scores
from streams.backtest.nab_scoring import (
    NAB_PROFILES,
    Corpus,
    FloatArray,
    Series,
    load_corpus,
    load_results,
    probationary_length,
    scaled_sigmoid,
    write_results,
)

NAB_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab"
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

# NAB's own scorer on these 28 files (shared/data/README.md): standard, low FP, low FN.
PUBLISHED = {
    "numenta": (72.3, 69.1, 76.0),
    "contextOSE": (71.6, 67.3, 75.5),
    "ARTime": (69.8, 60.0, 75.2),
    "knncad": (57.0, 46.6, 62.1),
    "earthgeckoSkyline": (55.1, 43.2, 60.8),
    "randomCutForest": (53.7, 44.9, 60.1),
    "twitterADVec": (41.2, 23.5, 49.7),
    "windowedGaussian": (26.5, 2.2, 37.1),
}
TOLERANCE = 0.15


@pytest.fixture(scope="session")
def nab_corpus() -> Corpus:
    if not (NAB_DIR / "data").is_dir():
        pytest.fail(f"the shared NAB data is missing: {NAB_DIR}")
    return load_corpus(NAB_DIR)


_published_cache: dict[str, dict[str, FloatArray]] = {}


def published(corpus: Corpus, detector: str) -> dict[str, FloatArray]:
    if detector not in _published_cache:
        _published_cache[detector] = load_results(NAB_DIR / "published_results", detector, corpus)
    return _published_cache[detector]


def series(key: str, n: int, windows: tuple[tuple[int, int], ...] = ()) -> Series:
    times = 1_400_000_000.0 + 300.0 * np.arange(n)
    return Series(key=key, timestamps=times, values=np.zeros(n), windows=windows)


@pytest.fixture
def small() -> Corpus:
    """Three 1000-row files (probation: the first 150 rows): two windows, one, none."""
    return Corpus(
        series=[
            series("cat/a.csv", 1000, ((400, 499), (700, 799))),
            series("cat/b.csv", 1000, ((300, 359),)),
            series("other/c.csv", 1000),
        ]
    )


def fire(corpus: Corpus, rows: dict[str, list[int]] | None = None) -> dict[str, FloatArray]:
    """Score 1 on the given rows of each file, 0 elsewhere."""
    out = {s.key: np.zeros(len(s)) for s in corpus.series}
    for key, idx in (rows or {}).items():
        out[key][idx] = 1.0
    return out


def perfect(corpus: Corpus) -> dict[str, FloatArray]:
    return fire(corpus, {s.key: [a for a, _ in s.windows] for s in corpus.series})


# --------------------------------------------------------------------------- the rules


def test_nab_constants() -> None:
    assert probationary_length(4032) == 604
    assert probationary_length(1243) == 186
    assert probationary_length(10_000) == 750
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.01) == -1.0


def test_perfect_detector_scores_100(small: Corpus, nab_corpus: Corpus) -> None:
    for corpus in (small, nab_corpus):
        res = corpus.evaluate(perfect(corpus))
        for p in PROFILES:
            assert res[p].score == pytest.approx(100.0, abs=1e-9)
            assert res[p].windows_detected == res[p].windows == corpus.n_windows
            assert res[p].fp == 0


def test_null_detector_scores_0(small: Corpus, nab_corpus: Corpus) -> None:
    for corpus in (small, nab_corpus):
        for value in (0.0, 0.5, 1.0):
            res = corpus.evaluate({s.key: np.full(len(s), value) for s in corpus.series})
            for p in PROFILES:
                assert res[p].score == pytest.approx(0.0, abs=1e-9)
                null = -NAB_PROFILES[p].fn_weight * corpus.n_windows
                assert res[p].raw == corpus.null_raw[p] == null


def test_window_detection_value(small: Corpus) -> None:
    """First row earns tpWeight, last row ~0, earlier always beats later."""
    null = small.null_raw["standard"]
    a, b = 400, 499
    gains = [
        small.raw_score_at(fire(small, {"cat/a.csv": [i]}), "standard", 1.0) - null
        for i in range(a, b + 1)
    ]
    assert gains[0] == pytest.approx(2.0)  # -fnWeight -> +tpWeight
    assert gains[-1] == pytest.approx(1.0 + scaled_sigmoid(-1 / 100) / scaled_sigmoid(-1.0))
    assert all(x > y for x, y in itertools.pairwise(gains))
    # Only the earliest detection in a window counts.
    both = small.raw_score_at(fire(small, {"cat/a.csv": [a + 5, b - 5]}), "standard", 1.0)
    early = small.raw_score_at(fire(small, {"cat/a.csv": [a + 5]}), "standard", 1.0)
    late = small.raw_score_at(fire(small, {"cat/a.csv": [b - 5]}), "standard", 1.0)
    assert both == early > late
    assert small.evaluate(fire(small, {"cat/a.csv": [a + 5]}))["standard"].score > small.evaluate(
        fire(small, {"cat/a.csv": [b - 5]})
    )["standard"].score


def test_false_positive_weighting(small: Corpus) -> None:
    """An FP just after a window costs less than one far from it; before any window: fpWeight."""
    for p in PROFILES:
        fp_weight = NAB_PROFILES[p].fp_weight
        null = small.null_raw[p]

        def cost(key: str, row: int, p: str = p, null: float = null) -> float:
            return null - small.raw_score_at(fire(small, {key: [row]}), p, 1.0)

        right_after = cost("cat/a.csv", 500)
        near = cost("cat/a.csv", 560)
        far = cost("cat/b.csv", 360 + 3 * 59 + 1)  # > 3 window widths after
        before_first = cost("cat/a.csv", 200)
        no_window_file = cost("other/c.csv", 500)
        assert 0 < right_after < near < far
        assert right_after == pytest.approx(-fp_weight * scaled_sigmoid(1 / 99))
        assert far == pytest.approx(fp_weight)
        assert before_first == pytest.approx(fp_weight)
        assert no_window_file == pytest.approx(fp_weight)
        # Between two windows the cost is measured from the preceding one.
        assert cost("cat/a.csv", 501) < cost("cat/a.csv", 650)


def test_probationary_rows_are_ignored(small: Corpus) -> None:
    prob = int(probationary_length(1000))
    assert prob == 150
    for p in PROFILES:
        null = small.null_raw[p]
        ignored = fire(small, {"cat/a.csv": list(range(prob)), "other/c.csv": [0, 149]})
        assert small.raw_score_at(ignored, p, 1.0) == null
        assert small.evaluate(ignored)[p].score == 0.0
        counted = fire(small, {"other/c.csv": [prob]})
        assert small.raw_score_at(counted, p, 1.0) == pytest.approx(
            null - NAB_PROFILES[p].fp_weight
        )


def test_window_overlapping_probation() -> None:
    """Rows of a window inside probation are not scored; the window still counts as perfect."""
    corpus = Corpus(series=[series("x/a.csv", 1000, ((100, 199),)), series("x/b.csv", 1000)])
    at_start = corpus.evaluate(fire(corpus, {"x/a.csv": [100]}))["standard"]
    assert at_start.score == 0.0  # the detection is in probation: a miss
    first_scored = corpus.evaluate(fire(corpus, {"x/a.csv": [150]}))["standard"]
    gain = 1.0 + scaled_sigmoid(-(199 - 150 + 1) / 100) / scaled_sigmoid(-1.0)
    assert first_scored.raw == pytest.approx(-1.0 + gain)
    assert first_scored.score == pytest.approx(100 * gain / 2)
    assert first_scored.score < 100.0


def test_sweep_matches_direct_scoring(small: Corpus) -> None:
    """The vectorised threshold sweep finds the true optimum of the direct score."""
    rng = np.random.default_rng(7)
    for _ in range(5):
        scores = {s.key: rng.integers(0, 40, len(s)) / 40.0 for s in small.series}
        res = small.evaluate(scores)
        candidates = sorted({float(v) for arr in scores.values() for v in arr} | {1.1})
        for p in PROFILES:
            direct = {t: small.raw_score_at(scores, p, t) for t in candidates}
            best = max(direct.values())
            assert res[p].raw == pytest.approx(best, abs=1e-9)
            assert direct[res[p].threshold] == pytest.approx(res[p].raw, abs=1e-9)
            # NAB keeps the highest threshold among equal scores.
            assert res[p].threshold == max(t for t, v in direct.items() if v >= best - 1e-9)


def test_nan_scores_are_refused(small: Corpus) -> None:
    scores = fire(small)
    scores["cat/a.csv"][500] = math.nan
    with pytest.raises(ValueError, match="finite"):
        small.evaluate(scores)


# --------------------------------------------------------------------------- NAB's figures


@pytest.mark.parametrize("detector", sorted(PUBLISHED))
def test_published_detectors_reproduce_nab(nab_corpus: Corpus, detector: str) -> None:
    res = nab_corpus.evaluate(published(nab_corpus, detector))
    got = tuple(round(res[p].score, 3) for p in PROFILES)
    for value, expected in zip(got, PUBLISHED[detector], strict=True):
        assert abs(value - expected) <= TOLERANCE, (detector, got, PUBLISHED[detector])


def test_one_window_is_worth_2_8_points(nab_corpus: Corpus) -> None:
    assert nab_corpus.n_windows == 36
    for p in PROFILES:
        prof = NAB_PROFILES[p]
        span = nab_corpus.perfect_raw(prof) - nab_corpus.null_raw[p]
        assert 100 * (prof.tp_weight + prof.fn_weight) / span == pytest.approx(2.78, abs=0.01)


def test_windowed_gaussian_port_matches_nab(nab_corpus: Corpus) -> None:
    """Row for row, the port equals NAB's published output (printed to 12 digits); rounded the
    same way it reproduces NAB's figures exactly."""
    pub = published(nab_corpus, "windowedGaussian")
    mine = {s.key: windowed_gaussian_scores(s.values) for s in nab_corpus.series}
    for key, arr in mine.items():
        np.testing.assert_allclose(arr, pub[key], rtol=0, atol=1e-11, err_msg=key)
    rounded = {k: np.array([float(f"{x:.12g}") for x in v]) for k, v in mine.items()}
    res = nab_corpus.evaluate(rounded)
    for p, expected in zip(PROFILES, PUBLISHED["windowedGaussian"], strict=True):
        assert abs(res[p].score - expected) <= TOLERANCE


# --------------------------------------------------------------------------- files and CLI


def test_files_round_trip_csv_and_gz(tmp_path: Path) -> None:
    root = tmp_path / "nab"
    (root / "data" / "catA").mkdir(parents=True)
    (root / "data" / "catB").mkdir(parents=True)
    (root / "labels").mkdir()
    stamps = [f"2015-01-01 {h:02d}:{m:02d}:00" for h in range(10) for m in range(0, 60, 5)]
    body = "timestamp,value\n" + "".join(f"{t},{i % 7}.5\n" for i, t in enumerate(stamps))
    (root / "data" / "catA" / "a.csv").write_text(body)
    with gzip.open(root / "data" / "catB" / "b.csv.gz", "wt") as fh:
        fh.write(body)
    windows = {
        "catA/a.csv": [[stamps[60] + ".000000", stamps[70] + ".000000"]],
        "catB/b.csv": [],
    }
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))

    corpus = load_corpus(root)
    assert corpus.keys == ["catA/a.csv", "catB/b.csv"]
    a = corpus.series[0]
    assert a.windows == ((60, 70),)
    assert a.timestamps[1] - a.timestamps[0] == 300.0
    assert a.timestamps[0] == 1_420_070_400.0  # naive timestamps are UTC
    assert a.values[:3].tolist() == [0.5, 1.5, 2.5]

    scores = {s.key: np.linspace(-0.5, 1.5, len(s)) for s in corpus.series}
    write_results(tmp_path / "results", "det", corpus, scores)
    path = tmp_path / "results" / "det" / "catA" / "det_a.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score,label"
    assert lines[1] == "2015-01-01 00:00:00,0.5,0.0,0"
    assert lines[61].endswith(",1")
    back = load_results(tmp_path / "results", "det", corpus)
    for key, arr in scores.items():
        assert back[key].tolist() == np.clip(arr, 0, 1).tolist()


def test_cli_writes_the_summary(tmp_path: Path, nab_corpus: Corpus) -> None:
    out = tmp_path / "nab.json"
    assert nab_main(["--data", str(NAB_DIR), "--out", str(out), "--only", "null,numenta"]) == 0
    summary = json.loads(out.read_text())
    categories = summary.pop("categories")
    assert summary == {
        "ours": "ours",
        "detectors": {
            "null": {"standard": 0.0, "reward_low_FP_rate": 0.0, "reward_low_FN_rate": 0.0},
            "numenta": {"standard": 72.3, "reward_low_FP_rate": 69.1, "reward_low_FN_rate": 76.0},
        },
    }
    # per category, thresholds optimized on it alone; no score where there is no window
    assert sorted(categories) == ["artificialWithAnomaly", "realAWSCloudwatch"]
    assert categories["realAWSCloudwatch"]["numenta"]["standard"] == 73.4
    assert categories["artificialWithAnomaly"]["null"]["standard"] == 0.0
    details = json.loads((tmp_path / "nab_details.json").read_text())
    assert details["windows"] == 36
    assert details["detectors"]["numenta"]["standard"]["windows_detected"] == 30


def test_windowed_gaussian_slides_like_nab() -> None:
    """Against a literal transcription of NAB's list-based detector, with a small window."""

    def tail(x: float, mean: float, std: float) -> float:
        if x < mean:
            return tail(2 * mean - x, mean, std)
        return 0.5 * math.erfc((x - mean) / std / math.sqrt(2))

    def literal(values: list[float], size: int, step: int) -> list[float]:
        window: list[float] = []
        buffer: list[float] = []
        mean, std, out = 0.0, 1.0, []
        for v in values:
            out.append(1 - tail(v, mean, std) if window else 0.0)
            if len(window) < size:
                window.append(v)
            else:
                buffer.append(v)
                if len(buffer) < step:
                    continue
                window = window[step:] + buffer
                buffer = []
            mean, std = float(np.mean(window)), float(np.std(window))
            std = std or 0.000001
        return out

    rng = np.random.default_rng(3)
    values = np.concatenate([np.full(20, 2.0), rng.normal(size=600), [9.0], rng.normal(size=80)])
    assert windowed_gaussian_scores(values, 50, 7).tolist() == literal(values.tolist(), 50, 7)
