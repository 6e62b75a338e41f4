"""Half-space trees (Tan, Ting & Liu, IJCAI 2011) with their masses as arrays, over a bank of rows.

River's :class:`river.anomaly.HalfSpaceTrees`, re-expressed so that many detectors' trees are a
few integer arrays: every tree is complete, so its nodes are numbered in heap order (the
children of node ``i`` are ``2i + 1`` and ``2i + 2``) and a tree is its splits (a feature and a
threshold per branch) and its masses (a count per node for the reference window, ``r_mass``,
and the window being filled, ``l_mass``). With a fixed seed every row has the same splits,
drawn once as River draws them (:func:`splits`: a feature chosen with probability proportional
to its width, a threshold uniform within the padded width, left subtree first); only the masses
are per row. Scores are River's exactly (``tests/unit/test_detector_members.py`` compares them on
the same stream).

Every feature is expected in [0, 1] (the per-VM detector standardizes metrics onto it), and
present in every sample.

>>> import numpy as np
>>> hst = HalfSpaceTrees(rows=1, features=2, n_trees=5, height=3, window_size=3, seed=42)
>>> for x in ([0.5, 0.5], [0.45, 0.5], [0.43, 0.5], [0.44, 0.5], [0.445, 0.5], [0.45, 0.5]):
...     hst.learn_many([0], [x])
>>> [round(float(hst.score_many([0], [x])[0]), 3) for x in ([0.45, 0.5], [0.0, 0.0])]
[0.0, 0.8]
"""

from __future__ import annotations

import functools
import random

import numpy as np
import numpy.typing as npt

from agents.anomaly._jit import kernel

FloatArray = npt.NDArray[np.float64]

#: Padding of each split's range (River: 0.15).
PADDING = 0.15


@functools.cache
def splits(features: int, n_trees: int, height: int, seed: int | None
           ) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """(feature, threshold) of every branch of every tree, shape ``(n_trees, 2**height - 1)``,
    in heap order, drawn with ``random.Random(seed)`` in River's order."""
    rng = random.Random(seed)
    n_branches = 2 ** height - 1
    feature = np.zeros((n_trees, n_branches), dtype=np.int64)
    threshold = np.zeros((n_trees, n_branches))

    def draw(tree: int, node: int, depth: int, limits: list[tuple[float, float]]) -> None:
        if depth == height:
            return
        on = rng.choices(population=list(range(features)),
                         weights=[b - a for a, b in limits])[0]
        a, b = limits[on]
        at = rng.uniform(a + PADDING * (b - a), b - PADDING * (b - a))
        feature[tree, node], threshold[tree, node] = on, at
        limits[on] = (a, at)
        draw(tree, 2 * node + 1, depth + 1, limits)
        limits[on] = (at, b)
        draw(tree, 2 * node + 2, depth + 1, limits)
        limits[on] = (a, b)

    for tree in range(n_trees):
        draw(tree, 0, 0, [(0.0, 1.0)] * features)
    return feature, threshold


@kernel
def _path(x, feature, threshold, height):
    n = x.shape[0]
    n_trees = feature.shape[0]
    path = np.zeros((n, n_trees, height + 1), dtype=np.int64)
    for k in range(n):
        for tree in range(n_trees):
            node = 0
            for depth in range(height):
                if x[k, feature[tree, node]] < threshold[tree, node]:
                    node = 2 * node + 1
                else:
                    node = 2 * node + 2
                path[k, tree, depth + 1] = node
    return path


@kernel
def _score(r_mass, windows, rows, path, size_limit, max_score):
    n, n_trees, levels = path.shape
    out = np.zeros(n)
    for k in range(n):
        r = rows[k]
        if windows[r] == 0:
            continue
        score = 0.0
        for tree in range(n_trees):
            # River walks down adding r_mass * 2**depth, and stops after the first node whose
            # r_mass is under a tenth of the window
            weight = 1.0
            for depth in range(levels):
                mass = r_mass[r, tree, path[k, tree, depth]]
                score += mass * weight
                if mass < size_limit:
                    break
                weight *= 2.0
        out[k] = 1.0 - score / max_score
    return out


@kernel
def _learn(l_mass, r_mass, counter, windows, rows, path, window_size):
    n, n_trees, levels = path.shape
    for k in range(n):
        r = rows[k]
        for tree in range(n_trees):
            for depth in range(levels):
                l_mass[r, tree, path[k, tree, depth]] += 1
        counter[r] += 1
        if counter[r] >= window_size:
            r_mass[r] = l_mass[r]
            l_mass[r] = 0
            counter[r] = 0
            windows[r] += 1


class HalfSpaceTrees:
    """Half-space trees for ``rows`` independent detectors of ``features`` features each.

    Parameters
    ----------
    n_trees, height, window_size, seed
        As River's; 3 trees of height 6 with a window of 100 serve a VM's six metrics.
    """

    def __init__(self, rows: int = 1, features: int = 1, *, n_trees: int = 3, height: int = 6,
                 window_size: int = 100, seed: int | None = 42) -> None:
        self.features, self.n_trees, self.height = features, n_trees, height
        self.window_size, self.seed = window_size, seed
        n_nodes = 2 ** (height + 1) - 1
        self.l_mass = np.zeros((rows, n_trees, n_nodes), dtype=np.int32)
        self.r_mass = np.zeros((rows, n_trees, n_nodes), dtype=np.int32)
        #: samples in the window being filled, and windows completed
        self.counter = np.zeros(rows, dtype=np.int64)
        self.windows = np.zeros(rows, dtype=np.int64)

    def path(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The nodes each sample of ``x`` visits in every tree, root to leaf: shape
        ``(len(x), n_trees, height + 1)``. The same for scoring and learning a sample."""
        feature, threshold = splits(self.features, self.n_trees, self.height, self.seed)
        return _path(np.asarray(x, dtype=np.float64), feature, threshold,
                     self.height)

    def score_many(self, idx: npt.ArrayLike, x: npt.ArrayLike | None,
                   path: npt.NDArray[np.int64] | None = None) -> FloatArray:
        """River's score in [0, 1] (high: anomalous) of the samples ``x`` (shape
        ``(len(idx), features)``); 0 until a row's first window is complete. Changes nothing.
        ``path``: the samples' :meth:`path`, if already known (then ``x`` may be None)."""
        if path is None:
            assert x is not None, "give the samples or their path"
            path = self.path(x)
        max_score = self.n_trees * self.window_size * (2 ** (self.height + 1) - 1)
        return _score(self.r_mass, self.windows, np.asarray(idx, dtype=np.int64),
                      path, 0.1 * self.window_size, float(max_score))

    def learn_many(self, idx: npt.ArrayLike, x: npt.ArrayLike | None,
                   path: npt.NDArray[np.int64] | None = None) -> None:
        if path is None:
            assert x is not None, "give the samples or their path"
            path = self.path(x)
        _learn(self.l_mass, self.r_mass, self.counter, self.windows,
               np.asarray(idx, dtype=np.int64), path, self.window_size)
