"""The per-VM detector: a univariate detector per metric, half-space trees on the joint shape,
and a stuck-agent test; one calibrated scale for all of them.

Each metric of a VM is a row of a :class:`~agents.anomaly.series.SeriesDetector` (four members,
evidence in decades). Two members see the VM whole:

- ``rarity``: River's half-space trees (:mod:`~agents.anomaly.hst`) on the VM's metrics, each
  standardized against its own baseline; their score goes through a Numenta likelihood like the
  univariate members, and catches combinations that no single metric shows;
- ``stuck``: a run of samples repeating the previous one exactly in every metric
  (:mod:`~agents.anomaly.stuck`), a dead agent re-sending its last reading.

The VM's evidence is the strongest of all (a rule fixed in advance: the maximum of calibrated
evidence); its score is that evidence squashed onto [0, 1) (:func:`squash`: 10 decades is 0.5).

:class:`FleetDetector` holds many VMs with the same metrics as rows of arrays and steps any
subset of them at once (each VM at most once per call); :class:`VMDetector` is one VM of it, with
samples and verdicts as dicts. NAB's univariate benchmark runs the same code with one metric.

>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> det = VMDetector(metrics=("cpu_pct", "net_rx_bytes_per_s"))
>>> for i in range(1500):
...     x = {"cpu_pct": 20 + rng.normal(0, 2), "net_rx_bytes_per_s": 1e5 + rng.normal(0, 1e3)}
...     det.learn_one(300.0 * i, x, det.score_one(300.0 * i, x))
>>> v = det.score_one(450000.0, {"cpu_pct": 97.0, "net_rx_bytes_per_s": 1e5})
>>> v.score > 0.5, v.metric, v.kind, v.direction
(True, 'cpu_pct', 'range', 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from agents.anomaly._jit import kernel
from agents.anomaly.hst import HalfSpaceTrees
from agents.anomaly.likelihood import RED_DECADES, YELLOW_DECADES, AnomalyLikelihood, squash
from agents.anomaly.series import MEMBERS, SeriesDetector, SeriesScores
from agents.anomaly.stuck import StuckRun
from schemas.records import METRIC_FIELDS, FeatureContribution

if TYPE_CHECKING:
    from agents.anomaly.pool import DetectorPool

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: The metrics whose sustained growth is evidence (``trend``): memory, where a leak shows.
TREND_METRICS: tuple[str, ...] = ("memory_used_bytes",)
#: Standardized values are clipped to +- this many spreads before the trees see them.
CLIP_Z = 6.0
#: The kinds of evidence a VM can show: the univariate members, then the joint ones.
KINDS: tuple[str, ...] = (*MEMBERS, "rarity", "stuck")


class FleetScores(NamedTuple):
    """What :meth:`FleetDetector.score_many` found, one row per VM scored."""

    #: evidence in decades per column of :attr:`FleetDetector.columns` (0 while warming up)
    evidence: FloatArray
    #: the side each column's evidence points to: +1 up, -1 down
    direction: FloatArray
    #: the strongest evidence, and its column
    best: FloatArray
    winner: IntArray
    #: ``best`` through Numenta's likelihood filter (see agents.anomaly.likelihood.onset)
    onset: FloatArray
    #: each metric against its baseline, in clipped spreads mapped onto [0, 1]
    shape: FloatArray
    series: SeriesScores
    path: IntArray
    trees: FloatArray
    repeated: npt.NDArray[np.bool_]


@kernel
def _shape(x, slow, variance, rows, clip_z):
    """Each metric against its baseline (the level member's slow mean and spread, as
    LevelShift.baseline computes it), in spreads clipped to +-clip_z, mapped onto [0, 1]."""
    n, m = x.shape
    out = np.empty((n, m))
    for k in range(n):
        for i in range(m):
            j = rows[k] * m + i
            spread = max(math.sqrt(max(variance[j], 0.0)), 1e-3 * abs(slow[j]), 1e-9)
            z = min(max((x[k, i] - slow[j]) / spread, -clip_z), clip_z)
            out[k, i] = z / (2.0 * clip_z) + 0.5
    return out


@kernel
def _combine(series_evidence, series_direction, series_ready, shape, rarity, has_window, x,
             last, rate, base, run, floor, ceiling, previous, rows, red, yellow):
    """Per VM: whether every metric repeated its last value (a stuck agent's step), the
    evidence of every column (the univariate members per metric, then rarity and stuck), its
    direction, the strongest (the first of equals) and its onset-filtered value."""
    n, m = shape.shape
    members = series_evidence.shape[1]
    columns = m * members + 2
    evidence = np.zeros((n, columns))
    direction = np.ones((n, columns))
    best = np.zeros(n)
    winner = np.zeros(n, dtype=np.int64)
    filtered = np.zeros(n)
    repeated = np.zeros(n, dtype=np.bool_)
    for k in range(n):
        r = rows[k]
        ready = True
        furthest = 0
        same = m >= 2
        for i in range(m):
            ready = ready and series_ready[k * m + i]
            same = same and x[k, i] == last[r, i]
            if abs(shape[k, i] - 0.5) > abs(shape[k, furthest] - 0.5):
                furthest = i
        repeated[k] = same
        joint = 1.0 if shape[k, furthest] >= 0.5 else -1.0
        if ready:
            for i in range(m):
                for j in range(members):
                    evidence[k, i * members + j] = series_evidence[k * m + i, j]
        for i in range(m):
            for j in range(members):
                direction[k, i * members + j] = series_direction[k * m + i, j]
        if ready and m >= 2:  # the joint members need two metrics or more
            if has_window[r]:
                evidence[k, columns - 2] = rarity[k]
            if same:  # a run of all-repeat steps, judged by the rate when it began
                q = base[r] if run[r] > 0 else rate[r]
                q = min(max(q, floor), ceiling)
                evidence[k, columns - 1] = -(run[r] + 1) * math.log10(q)
        direction[k, columns - 2] = joint
        direction[k, columns - 1] = joint
        for c in range(columns):
            if evidence[k, c] > best[k]:
                best[k] = evidence[k, c]
                winner[k] = c
        both_red = previous[r] >= red and best[k] >= red
        filtered[k] = yellow if both_red else best[k]
    return evidence, direction, best, winner, filtered, repeated


class FleetDetector:
    """The per-VM detector for ``rows`` VMs that report the same ``metrics``.

    Parameters
    ----------
    metrics
        The metric names, in the order of the columns of the samples given to it.
    rows
        How many VMs.
    trend_metrics
        The metrics whose sustained growth is evidence too.
    n_trees, height, window_size, seed
        The half-space trees' shape (River's parameters).
    """

    def __init__(self, metrics: tuple[str, ...] = METRIC_FIELDS, rows: int = 1, *,
                 trend_metrics: tuple[str, ...] = TREND_METRICS, n_trees: int = 3,
                 height: int = 6, window_size: int = 100, seed: int = 42) -> None:
        self.metrics = tuple(metrics)
        m = len(self.metrics)
        trend = np.tile([metric in trend_metrics for metric in self.metrics], rows)
        self.series = SeriesDetector(rows=rows * m, trend=trend)
        self.trees = HalfSpaceTrees(rows, m, n_trees=n_trees, height=height,
                                    window_size=window_size, seed=seed)
        self.rarity = AnomalyLikelihood(rows)
        self.stuck = StuckRun(rows)
        #: each VM's last sample (for the stuck test)
        self.last = np.full((rows, m), np.nan)
        #: each VM's strongest evidence at its last sample (for the onset filter)
        self.previous = np.zeros(rows)
        #: (metric, kind) of each column of the evidence
        self.columns: tuple[tuple[str, str], ...] = (
            *((metric, kind) for metric in self.metrics for kind in MEMBERS),
            ("*", "rarity"), ("*", "stuck"))
        # River orders a sample's features by name: the trees see the metrics sorted
        self._sorted = np.array(sorted(range(m), key=self.metrics.__getitem__))
        self._offsets = np.arange(m)

    def _series_rows(self, rows: IntArray) -> IntArray:
        m = len(self.metrics)
        if len(rows) == 1:  # one VM, as the per-VM pipeline steps it
            return self._offsets + rows[0] * m
        return np.asarray((rows[:, None] * m + self._offsets[None, :]).ravel())

    def ready(self, idx: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which VMs give evidence (every metric's warm-up is behind it)."""
        rows = np.asarray(idx, dtype=np.int64)
        ready = self.series.ready(self._series_rows(rows))
        return np.asarray(ready.reshape(len(rows), len(self.metrics)).all(axis=1))

    def baseline(self, idx: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(slow mean, spread) per VM and metric, shape ``(len(idx), metrics)``."""
        rows = np.asarray(idx, dtype=np.int64)
        mean, spread = self.series.baseline(self._series_rows(rows))
        shape = (len(rows), len(self.metrics))
        return mean.reshape(shape), spread.reshape(shape)

    def score_many(self, idx: npt.ArrayLike, t: npt.ArrayLike, x: npt.ArrayLike
                   ) -> FleetScores:
        """Evidence for the samples ``x`` (shape ``(len(idx), metrics)``) at times ``t``.
        Changes nothing."""
        rows = np.asarray(idx, dtype=np.int64)
        x = np.asarray(x, dtype=np.float64)
        m = x.shape[1]
        srows = self._series_rows(rows)
        s = self.series.score_many(srows, np.repeat(np.asarray(t, dtype=np.float64), m),
                                   x.ravel())
        level = self.series.level
        shape = _shape(x, level.slow, level.variance, rows, CLIP_Z)
        path = self.trees.path(shape[:, self._sorted])
        trees = self.trees.score_many(rows, None, path)
        rarity = self.rarity.score_many(rows, trees[:, None]).evidence[:, 0]
        stuck = self.stuck
        evidence, direction, best, winner, filtered, repeated = _combine(
            s.evidence, s.direction, s.ready, shape, rarity, self.trees.windows, x, self.last,
            stuck.rate, stuck.base, stuck.run, stuck.floor, stuck.ceiling, self.previous, rows,
            RED_DECADES, YELLOW_DECADES)
        return FleetScores(evidence, direction, best, winner, filtered, shape, s, path, trees,
                           repeated)

    def learn_many(self, idx: npt.ArrayLike, t: npt.ArrayLike, x: npt.ArrayLike,
                   scored: FleetScores | None = None) -> None:
        """Learn the samples ``x`` at times ``t`` (``scored``: their :meth:`score_many`)."""
        rows = np.asarray(idx, dtype=np.int64)
        x = np.asarray(x, dtype=np.float64)
        if scored is None:
            scored = self.score_many(rows, t, x)
        m = x.shape[1]
        self.series.learn_many(self._series_rows(rows),
                               np.repeat(np.asarray(t, dtype=np.float64), m), x.ravel(),
                               scored.series)
        if m >= 2:
            has_window = self.trees.windows[rows] > 0
            if has_window.any():
                self.rarity.learn_many(rows[has_window], scored.trees[has_window, None])
            self.stuck.learn_many(rows, scored.repeated)
        self.trees.learn_many(rows, None, scored.path)
        self.last[rows] = x
        self.previous[rows] = scored.best


@dataclass
class Verdict:
    """What the detector thinks of one VM sample."""

    #: the strongest evidence, squashed onto [0, 1)
    score: float
    metric: str = ""
    kind: str = ""
    #: the side the winning evidence points to: +1 up, -1 down
    direction: float = 0.0
    #: evidence in decades per (metric, kind); kinds "rarity" and "stuck" have metric "*"
    evidence: dict[tuple[str, str], float] = field(default_factory=dict)
    #: ``score`` through Numenta's likelihood filter (agents.anomaly.likelihood.onset)
    onset: float = 0.0
    #: what learn_one needs from scoring (not part of the verdict)
    scored: Any = field(default=None, repr=False, compare=False)


def verdict_of(fleet: FleetDetector, s: FleetScores, k: int) -> Verdict:
    """The :class:`Verdict` on the ``k``-th sample of ``s`` (a :meth:`FleetDetector.score_many`
    of ``fleet``)."""
    evidence = dict(zip(fleet.columns, s.evidence[k].tolist(), strict=True))
    best = float(s.best[k])
    if best <= 0.0:
        return Verdict(score=0.0, evidence=evidence, scored=s)
    winner = int(s.winner[k])
    metric, kind = fleet.columns[winner]
    if metric == "*":  # joint evidence: name the metric furthest from its baseline
        metric = fleet.metrics[int(np.argmax(np.abs(s.shape[k] - 0.5)))]
    return Verdict(score=squash(best), metric=metric, kind=kind,
                   direction=float(s.direction[k, winner]), evidence=evidence,
                   onset=squash(float(s.onset[k])), scored=s)


class VMDetector:
    """One VM of a :class:`FleetDetector`, with samples and verdicts as dicts.

    On its own it is a one-row fleet detector. :meth:`attach` moves its rows into a slot of a
    :class:`~agents.anomaly.pool.DetectorPool`, so that a batch of many VMs' samples is
    scored and learned at once (:meth:`~agents.anomaly.pool.DetectorPool.step`); its stored
    state (``__getstate__``) is always the one-row form. Parameters are :class:`FleetDetector`'s.
    """

    _pool: DetectorPool | None = None  # a loaded state is in no pool

    def __init__(self, metrics: tuple[str, ...] = METRIC_FIELDS, **params: Any) -> None:
        self._own = FleetDetector(metrics, rows=1, **params)
        self.metrics = self._own.metrics
        self._params = params
        self._row = np.zeros(1, dtype=np.int64)

    @property
    def fleet(self) -> FleetDetector:
        """The fleet detector holding this VM's rows (row ``slot``)."""
        return self._pool.fleet if self._pool is not None else self._own

    @property
    def slot(self) -> int:
        """This VM's row of :attr:`fleet`."""
        return int(self._row[0])

    @property
    def pool(self) -> DetectorPool | None:
        """The pool it is attached to, if any."""
        return self._pool

    def attach(self, pool: DetectorPool) -> None:
        """Move this VM's rows into a free slot of ``pool`` (same metrics)."""
        if self._pool is not None:
            raise ValueError("already attached to a pool")
        if pool.metrics != self.metrics:
            raise ValueError(f"the pool learns {pool.metrics}, this VM {self.metrics}")
        slot = pool.acquire()
        pool.copy_in(self._own, slot)
        self._pool, self._row = pool, np.array([slot], dtype=np.int64)
        del self._own

    def detach(self) -> None:
        """Copy this VM's rows out of its pool and free the slot."""
        if self._pool is None:
            return
        self._own = self._pool.copy_out(self.slot)
        self._pool.release(self.slot)
        self._pool, self._row = None, np.zeros(1, dtype=np.int64)

    def __getstate__(self) -> tuple[Any, ...]:
        # The VM's rows as a few flat arrays (agents.anomaly.pool.pack_rows), whether
        # attached or not: no detector object to walk.
        from agents.anomaly.pool import layout, pack_rows

        rows = layout(self.metrics, **self._params)
        if self._pool is not None:
            packed = pack_rows(self._pool.fleet, self.slot, rows)
        else:
            packed = pack_rows(self._own, 0, rows)
        return (self.metrics, tuple(sorted(self._params.items())), packed)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        from agents.anomaly.pool import layout, unpack_rows

        metrics, params, packed = state
        self.__init__(tuple(metrics), **dict(params))  # type: ignore[misc]
        unpack_rows(self._own, 0, layout(self.metrics, **self._params), list(packed))

    @property
    def ready(self) -> bool:
        return bool(self.fleet.ready(self._row)[0])

    def _sample(self, values: Mapping[str, float]) -> FloatArray:
        return np.array([[values[m] for m in self.metrics]], dtype=np.float64)

    def score_one(self, timestamp: float, values: Mapping[str, float]) -> Verdict:
        """Score a sample (a dict with a value for every metric) before learning it."""
        s = self.fleet.score_many(self._row, np.array([timestamp], dtype=np.float64),
                                  self._sample(values))
        return verdict_of(self.fleet, s, 0)

    def learn_one(self, timestamp: float, values: Mapping[str, float],
                  verdict: Verdict | None = None) -> None:
        """Learn a sample (``verdict``: its :meth:`score_one`, so nothing is computed twice)."""
        scored = verdict.scored if verdict is not None else None
        self.fleet.learn_many(self._row, np.array([timestamp], dtype=np.float64),
                              self._sample(values), scored)

    def explain(self, values: Mapping[str, float], top: int = 3,
                focus: str = "") -> list[FeatureContribution]:
        """The ``top`` metrics furthest from their baseline (slow mean), in spreads; the
        ``focus`` metric (the one whose evidence raised the alert) first."""
        mean, spread = self.fleet.baseline(self._row)
        out = []
        for i, m in enumerate(self.metrics):
            if m not in values:
                continue
            z = (values[m] - mean[0, i]) / spread[0, i]
            out.append(FeatureContribution(name=m, value=float(values[m]),
                                           baseline=round(float(mean[0, i]), 6),
                                           zscore=round(max(min(float(z), 1e6), -1e6), 3)))
        out.sort(key=lambda c: (c.name != focus, -abs(c.zscore)))
        return out[:top]


def score_series(timestamps: npt.ArrayLike, values: npt.ArrayLike) -> FloatArray:
    """One univariate series through the per-VM detector with one metric, ``value``: every
    row's onset-filtered score (what NAB scores)."""
    return score_fleet([np.asarray(timestamps, float)], [np.asarray(values, float)])[0]


def score_fleet(timestamps: list[FloatArray], values: list[FloatArray]) -> list[FloatArray]:
    """Several univariate series stepped together as the rows of one :class:`FleetDetector`
    (metric ``value``), each online and independent of the others: every row's onset-filtered
    score."""
    det = FleetDetector(("value",), rows=len(values))
    out = [np.zeros(len(v)) for v in values]
    lengths = np.array([len(v) for v in values])
    for step in range(int(lengths.max(initial=0))):
        rows = np.nonzero(lengths > step)[0]
        t = np.array([timestamps[r][step] for r in rows])
        x = np.array([[values[r][step]] for r in rows])
        s = det.score_many(rows, t, x)
        det.learn_many(rows, t, x, s)
        scores = s.onset / (s.onset + 10.0)
        for r, v in zip(rows.tolist(), scores.tolist(), strict=True):
            out[r][step] = v
    return out
